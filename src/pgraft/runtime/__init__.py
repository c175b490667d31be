"""How a stage runs: the stage runner, the thread policy and the warm fork server (`pgraft warm`)."""
