"""Back-office documents and the operations service tasks call (importing registers them)."""
