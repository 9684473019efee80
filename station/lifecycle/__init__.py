"""The model lifecycle: train from a dataset version, evaluate, gate, deploy, roll back."""
