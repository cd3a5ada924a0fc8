-- Per run and key, everything a leaderboard or diff needs from a metric's history:
-- the last value (latest step, then latest time), the best values either way with the
-- step where each was first reached (ties: earliest step), and counts. NaN never wins
-- min or max; a run whose points are all NaN has NULL min/max.
CREATE OR REPLACE VIEW metric_summaries AS
SELECT
    run_id,
    any_value(project) AS project,
    key,
    arg_max(value, (step, ts, seq)) AS last_value,
    max(step) AS last_step,
    min(value) FILTER (WHERE NOT isnan(value)) AS min_value,
    arg_min(step, (value, step)) FILTER (WHERE NOT isnan(value)) AS min_step,
    max(value) FILTER (WHERE NOT isnan(value)) AS max_value,
    arg_max(step, (value, -step)) FILTER (WHERE NOT isnan(value)) AS max_step,
    count(*) AS n_points,
    count(*) FILTER (WHERE isnan(value)) AS n_nan,
    max(ts) AS last_ts
FROM events_metrics
GROUP BY run_id, key;
