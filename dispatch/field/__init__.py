"""Field execution: identity at the door, proof of visit, work reports, hazards, inspection campaigns."""
