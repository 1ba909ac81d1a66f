"""Trading decisions and their execution: risk rules, the desk, the one execution gate, the
paper book and the live book."""
