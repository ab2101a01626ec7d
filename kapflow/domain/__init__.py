"""kapflow's pure domain: workflows, cases, facts, guards and errors. Standard library only."""
