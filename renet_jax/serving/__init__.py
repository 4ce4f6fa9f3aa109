"""Using a trained run: loaded from its workdir (`inference`), exported as a portable
`jax.export` file (`exporting`), and its released parameters re-evaluated against its
results.json (`released`)."""
