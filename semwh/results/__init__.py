"""Reading stored results back out: named queries and export (:mod:`semwh.results.named`),
the table formats and the rule for every user output file (:mod:`semwh.results.output`), and
the figures and HTML report drawn from named queries only (:mod:`semwh.results.report`)."""
