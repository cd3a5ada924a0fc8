-- What each run cost, in money, energy and carbon, and where every figure came from: the
-- per-run cost inputs (queries/cost_inputs.sql) priced by run_costs_over
-- (queries/run_costs_over.sql, where the formulas are documented).
CREATE OR REPLACE VIEW run_costs AS
SELECT * FROM run_costs_over('cost_inputs');
