-- What each run cost, in money, energy and carbon, and where every figure came from.
--   compute_usd = wall hours x instance $/hour               (instance type known)
--               = GPU-hours x GPU $/hour + core-hours x core $/hour   (otherwise)
--   energy_usd  = energy kWh x electricity $/kWh        (only when [costs] power_paid)
--   cost_usd    = sum of explicit 'bill' cost events if any, else compute + energy
-- A price that cannot be found leaves cost_usd NULL (unknown), never 0.
-- Nested runs share their machine: a parent's billed hours exclude the time its children
-- ran (they are billed themselves), so a sweep is not paid twice.
-- Instance type and region: the run's tags (instance_type, region) win over what the
-- sampler recorded from LEDGER_INSTANCE_TYPE / LEDGER_REGION / [costs] at run start.
CREATE OR REPLACE VIEW run_costs AS
-- Several processes may follow one run (`ledger run` around a Python script, workers
-- continuing LEDGER_RUN_ID): hardware adds up across hosts, not across processes of one
-- host; energy is metered per machine, so per host the largest figure counts (two
-- processes metering the same machine must not count it twice), summed over hosts.
WITH resource_hosts AS (
    SELECT
        run_id,
        coalesce(json_extract_string(attrs, '$.host'), '') AS host,
        arg_max(attrs, ts) AS attrs
    FROM events_costs WHERE kind = 'resources'
    GROUP BY ALL
),
resources AS (
    SELECT
        run_id,
        sum(TRY_CAST(json_extract(attrs, '$.cpu_cores') AS DOUBLE)) AS cpu_cores,
        CASE WHEN count(*) = count(TRY_CAST(json_extract(attrs, '$.gpu_count') AS DOUBLE))
             THEN sum(TRY_CAST(json_extract(attrs, '$.gpu_count') AS DOUBLE)) END AS gpu_count,
        max(json_extract_string(attrs, '$.gpu_model')) AS gpu_model,
        max(json_extract_string(attrs, '$.instance_type')) AS instance_type,
        max(json_extract_string(attrs, '$.instance_source')) AS instance_source,
        max(json_extract_string(attrs, '$.region')) AS region
    FROM resource_hosts
    GROUP BY run_id
),
energy_writers AS (
    SELECT
        run_id,
        writer_id,
        coalesce(json_extract_string(arg_max(attrs, ts), '$.host'), '') AS host,
        arg_max(source, ts) AS source,
        arg_max(energy_kwh, ts) AS energy_kwh,
        arg_max(cpu_energy_kwh, ts) AS cpu_energy_kwh,
        arg_max(gpu_energy_kwh, ts) AS gpu_energy_kwh,
        arg_max(ram_energy_kwh, ts) AS ram_energy_kwh,
        arg_max(emissions_kg, ts) AS emissions_kg,
        arg_max(measured, ts) AS measured,
        TRY_CAST(json_extract(arg_max(attrs, ts), '$.covered_s') AS DOUBLE) AS covered_s
    FROM events_costs WHERE kind = 'energy'
    GROUP BY run_id, writer_id
),
energy_hosts AS (
    SELECT * FROM energy_writers
    QUALIFY row_number() OVER (
        PARTITION BY run_id, host ORDER BY energy_kwh DESC NULLS LAST, writer_id
    ) = 1
),
energy AS (
    SELECT
        run_id,
        string_agg(DISTINCT source, '+') AS energy_source,
        sum(energy_kwh) AS energy_kwh,
        sum(cpu_energy_kwh) AS cpu_energy_kwh,
        sum(gpu_energy_kwh) AS gpu_energy_kwh,
        sum(ram_energy_kwh) AS ram_energy_kwh,
        sum(emissions_kg) AS recorded_emissions_kg,
        bool_and(measured) AS energy_measured,
        max(covered_s) AS energy_covered_s
    FROM energy_hosts
    GROUP BY run_id
),
bills AS (
    SELECT run_id, sum(cost_usd) AS bill_usd, string_agg(DISTINCT source, ', ') AS bill_source
    FROM events_costs WHERE kind = 'bill'
    GROUP BY run_id
),
children AS (
    SELECT parent_run_id AS run_id, sum(duration_s) AS child_s
    FROM runs WHERE parent_run_id IS NOT NULL
    GROUP BY parent_run_id
),
placement_tags AS (
    SELECT
        run_id,
        any_value(value) FILTER (WHERE key = 'instance_type') AS instance_type,
        any_value(value) FILTER (WHERE key = 'region') AS region
    FROM tags WHERE key IN ('instance_type', 'region')
    GROUP BY run_id
),
placed AS (
    SELECT
        r.run_id, r.project, r.experiment, r.name, r.status, r."user", r.start_time,
        r.end_time, r.duration_s,
        r.duration_s / 3600.0 AS run_hours,
        greatest(r.duration_s - coalesce(ch.child_s, 0), 0) / 3600.0 AS wall_hours,
        coalesce(t.instance_type, s.instance_type) AS instance_type,
        CASE WHEN t.instance_type IS NOT NULL THEN 'tag' ELSE s.instance_source END
            AS instance_source,
        coalesce(t.region, s.region) AS region,
        s.cpu_cores,
        s.gpu_count,
        s.gpu_model,
        s.run_id IS NOT NULL AS sampled,
        e.* EXCLUDE (run_id),
        b.bill_usd, b.bill_source
    FROM runs r
    LEFT JOIN resources s USING (run_id)
    LEFT JOIN energy e USING (run_id)
    LEFT JOIN bills b USING (run_id)
    LEFT JOIN placement_tags t USING (run_id)
    LEFT JOIN children ch USING (run_id)
),
rated AS (
    SELECT
        p.*,
        (SELECT rate FROM pricing WHERE item = 'instance' AND name = p.instance_type) AS instance_rate,
        (SELECT rate FROM pricing
         WHERE item = 'gpu' AND p.gpu_model IS NOT NULL
           AND regexp_matches(p.gpu_model, '(^|[^A-Za-z0-9])' || name || '([^A-Za-z0-9]|$)', 'i')
         ORDER BY length(name) DESC LIMIT 1) AS gpu_rate,
        (SELECT rate FROM pricing WHERE item = 'cpu_core' AND name = 'default') AS core_rate,
        coalesce(
            (SELECT rate FROM pricing WHERE item = 'electricity' AND name = p.region),
            (SELECT rate FROM pricing WHERE item = 'electricity' AND name = 'default')
        ) AS kwh_rate,
        (SELECT rate FROM pricing WHERE item = 'carbon_intensity' AND name = p.region) AS region_intensity,
        (SELECT rate FROM pricing WHERE item = 'carbon_intensity' AND name = 'default') AS default_intensity
    FROM placed p
),
computed AS (
    SELECT
        *,
        wall_hours * cpu_cores AS core_hours,
        wall_hours * gpu_count AS gpu_hours,
        CASE
            WHEN instance_rate IS NOT NULL THEN wall_hours * instance_rate
            WHEN cpu_cores IS NULL OR gpu_count IS NULL THEN NULL
            ELSE wall_hours * cpu_cores * core_rate
                 + CASE WHEN gpu_count = 0 THEN 0 ELSE wall_hours * gpu_count * gpu_rate END
        END AS compute_usd,
        CASE WHEN getvariable('power_paid') THEN energy_kwh * kwh_rate ELSE 0 END AS energy_usd
    FROM rated
)
SELECT
    run_id, project, experiment, name, status, "user", start_time, end_time, duration_s,
    run_hours, wall_hours, core_hours, gpu_hours, cpu_cores, gpu_count, gpu_model,
    instance_type, instance_source, region,
    energy_kwh, cpu_energy_kwh, gpu_energy_kwh, ram_energy_kwh,
    CASE WHEN energy_covered_s > 0 AND duration_s > 0
         THEN least(energy_covered_s / duration_s, 1.0) END AS energy_coverage,
    energy_source, energy_measured,
    coalesce(
        energy_kwh * region_intensity, recorded_emissions_kg, energy_kwh * default_intensity
    ) AS emissions_kg,
    CASE WHEN energy_kwh IS NULL THEN NULL
         WHEN region_intensity IS NOT NULL THEN 'catalog:' || region
         WHEN recorded_emissions_kg IS NOT NULL THEN 'codecarbon'
         ELSE 'catalog:default' END AS emissions_source,
    compute_usd,
    energy_usd,
    compute_usd + energy_usd AS estimated_usd,
    bill_usd,
    coalesce(bill_usd, compute_usd + energy_usd) AS cost_usd,
    CASE
        WHEN bill_usd IS NOT NULL THEN 'bill'
        WHEN compute_usd + energy_usd IS NULL THEN 'unknown'
        WHEN instance_rate IS NOT NULL THEN 'instance'
        ELSE 'core+gpu hours'
    END AS cost_basis,
    concat_ws('; ',
        CASE WHEN bill_usd IS NOT NULL THEN 'billed: ' || bill_source END,
        CASE WHEN instance_type IS NOT NULL AND instance_rate IS NULL
             THEN 'instance type ' || instance_type || ' not in the pricing catalog' END,
        CASE WHEN instance_rate IS NULL AND NOT sampled
             THEN 'no resource samples: CPU cores and GPUs unknown' END,
        CASE WHEN instance_rate IS NULL AND sampled AND gpu_count IS NULL
             THEN 'run ended before its GPUs were probed' END,
        CASE WHEN instance_rate IS NULL AND cpu_cores IS NOT NULL AND gpu_count IS NOT NULL
             THEN 'no instance type: priced by core-hours and GPU-hours at catalog default rates' END,
        CASE WHEN instance_rate IS NULL AND gpu_count > 0 AND gpu_rate IS NULL
             THEN 'GPU model ' || coalesce(gpu_model, '?') || ' not in the pricing catalog' END,
        CASE WHEN getvariable('power_paid') AND energy_kwh IS NULL
             THEN 'power is paid separately but the run has no energy figure' END,
        CASE WHEN wall_hours < run_hours
             THEN 'time its child runs ran is billed to them, not to this run' END,
        CASE WHEN status IN ('running', 'stalled') THEN 'run still open: cost so far' END
    ) AS cost_note
FROM computed;
