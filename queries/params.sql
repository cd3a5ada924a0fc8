-- Params of each run. Params are immutable within a run, so the first value logged wins.
CREATE OR REPLACE VIEW params AS
SELECT
    run_id,
    any_value(project) AS project,
    key,
    arg_min(value, ts) AS value,
    arg_min(value_type, ts) AS value_type,
    min(ts) AS ts
FROM events_params
GROUP BY run_id, key;
