"""FedAvg on the digits over Flower, with securefl's secure aggregation."""
