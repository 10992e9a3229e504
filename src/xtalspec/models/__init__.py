"""Neural network models of the reproduced papers."""
