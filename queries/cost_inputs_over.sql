-- The per-run cost inputs (cost_inputs' columns) from two relations, named as text:
-- `runs`, one row per run written by one process, and `writers`, one row per (run,
-- writer) of the other runs. Both carry r_ts, a (the parsed resources struct),
-- has_energy, source and the energy columns, covered_s, bill_usd and bill_sources (NULL
-- without bills). The cost_inputs view folds raw events into them; the report's
-- summary path (analytics/cost_summaries.py) folds cost summaries: one pricing fold.
CREATE OR REPLACE MACRO cost_inputs_over(runs, writers) AS TABLE
WITH one_process AS (
    SELECT
        run_id,
        CASE WHEN r_ts IS NOT NULL THEN a.cpu_cores END AS cpu_cores,
        CASE WHEN r_ts IS NOT NULL THEN a.gpu_count END AS gpu_count,
        a.gpu_model, a.instance_type, a.instance_source, a.region,
        r_ts IS NOT NULL AS sampled,
        CASE WHEN has_energy THEN nullif(source, '') END AS energy_source,
        energy_kwh, cpu_energy_kwh, gpu_energy_kwh, ram_energy_kwh,
        emissions_kg AS recorded_emissions_kg,
        measured AS energy_measured,
        bill_usd,
        array_to_string(list_sort(list_distinct(bill_sources)), ', ') AS bill_source,
        covered_s AS energy_covered_s
    FROM query_table(runs)
),
hosts AS (
    SELECT
        run_id,
        count(r_ts) > 0 AS has_resources,
        arg_max_null(a.cpu_cores, r_ts) AS cpu_cores,
        arg_max_null(a.gpu_count, r_ts) AS gpu_count,
        arg_max_null(a.gpu_model, r_ts) AS gpu_model,
        arg_max_null(a.instance_type, r_ts) AS instance_type,
        arg_max_null(a.instance_source, r_ts) AS instance_source,
        arg_max_null(a.region, r_ts) AS region,
        bool_or(has_energy) AS has_energy,
        arg_max_null(source, e_rank) AS source,
        arg_max_null(energy_kwh, e_rank) AS energy_kwh,
        arg_max_null(cpu_energy_kwh, e_rank) AS cpu_energy_kwh,
        arg_max_null(gpu_energy_kwh, e_rank) AS gpu_energy_kwh,
        arg_max_null(ram_energy_kwh, e_rank) AS ram_energy_kwh,
        arg_max_null(emissions_kg, e_rank) AS emissions_kg,
        arg_max_null(measured, e_rank) AS measured,
        arg_max_null(covered_s, e_rank) AS covered_s,
        sum(bill_usd) AS bill_usd,
        flatten(list(bill_sources)) AS bill_sources
    FROM (
        SELECT *, CASE WHEN has_energy THEN coalesce(energy_kwh, -1.0) END AS e_rank
        FROM query_table(writers)
    )
    GROUP BY run_id, coalesce(a.host, 'writer:' || writer_id)
),
several_processes AS (
    SELECT
        run_id,
        CASE WHEN bool_or(has_resources) THEN sum(cpu_cores) FILTER (WHERE has_resources) END
            AS cpu_cores,
        CASE WHEN count(*) FILTER (WHERE has_resources) = count(gpu_count) FILTER (WHERE has_resources)
             THEN sum(gpu_count) FILTER (WHERE has_resources) END AS gpu_count,
        max(gpu_model) AS gpu_model,
        max(instance_type) AS instance_type,
        max(instance_source) AS instance_source,
        max(region) AS region,
        bool_or(has_resources) AS sampled,
        nullif(array_to_string(list_sort(list_distinct(list(source) FILTER (WHERE has_energy))), '+'), '')
            AS energy_source,
        sum(energy_kwh) FILTER (WHERE has_energy) AS energy_kwh,
        sum(cpu_energy_kwh) FILTER (WHERE has_energy) AS cpu_energy_kwh,
        sum(gpu_energy_kwh) FILTER (WHERE has_energy) AS gpu_energy_kwh,
        sum(ram_energy_kwh) FILTER (WHERE has_energy) AS ram_energy_kwh,
        sum(emissions_kg) FILTER (WHERE has_energy) AS recorded_emissions_kg,
        bool_and(measured) FILTER (WHERE has_energy) AS energy_measured,
        max(covered_s) FILTER (WHERE has_energy) AS energy_covered_s,
        sum(bill_usd) AS bill_usd,
        array_to_string(list_sort(list_distinct(flatten(list(bill_sources)))), ', ') AS bill_source
    FROM hosts
    GROUP BY run_id
)
SELECT * FROM one_process UNION ALL BY NAME SELECT * FROM several_processes;
