-- Per run and key: the value at the latest step (ties: latest time), with the range and
-- count of all points. min/max skip NaN so one NaN does not hide the real range.
CREATE OR REPLACE VIEW latest_metrics AS
SELECT
    run_id,
    any_value(project) AS project,
    key,
    arg_max(value, (step, ts, seq)) AS value,
    max(step) AS step,
    arg_max(ts, (step, ts, seq)) AS ts,
    min(value) FILTER (WHERE NOT isnan(value)) AS min_value,
    max(value) FILTER (WHERE NOT isnan(value)) AS max_value,
    count(*) AS n_points
FROM events_metrics
GROUP BY run_id, key;
