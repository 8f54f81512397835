"""ispyd's builtin Python plugins."""
