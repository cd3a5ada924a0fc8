-- Each run's cost split across the UTC days its wall time spans, in proportion to the
-- time spent in each day (energy and emissions are taken as spread evenly too). Summing
-- day_fraction over a run's rows gives 1.
CREATE OR REPLACE VIEW run_cost_days AS
WITH spans AS (
    SELECT
        *,
        start_time + to_microseconds(CAST(duration_s * 1e6 AS BIGINT)) AS stop_time
    FROM run_costs
    WHERE start_time IS NOT NULL
),
days AS (
    -- unnest in the select list, not a LATERAL subquery (5x slower at 1M runs); a run
    -- inside one day gets a one-element list without generating a series
    SELECT *, unnest(
        CASE WHEN date_trunc('day', start_time) = date_trunc('day', stop_time)
             THEN [date_trunc('day', start_time)]
             ELSE generate_series(
                 date_trunc('day', start_time), date_trunc('day', stop_time), INTERVAL 1 DAY
             )
        END
    ) AS day
    FROM spans
)
SELECT
    * EXCLUDE (day, stop_time),
    CAST(day AS DATE) AS day,
    greatest(start_time, day) AS piece_start,
    least(stop_time, day + INTERVAL 1 DAY) AS piece_end,
    CASE WHEN duration_s > 0
         THEN epoch(least(stop_time, day + INTERVAL 1 DAY) - greatest(start_time, day)) / duration_s
         ELSE 1.0 END AS day_fraction
FROM days;
