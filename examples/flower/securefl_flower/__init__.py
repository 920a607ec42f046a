"""securefl-flower: a Flower / PyTorch app whose training updates reach the server only as a secure sum."""
