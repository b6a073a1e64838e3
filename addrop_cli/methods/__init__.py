"""Fine-tuning methods behind one interface: baseline, dropout and AD-DROP, and their registry."""
