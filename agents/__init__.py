"""The agents: one module per agent (its core and its wiring), and the runtime that hosts them."""
