"""Planning from the call journal: staffing forecast, its rendering and its simulation check."""
