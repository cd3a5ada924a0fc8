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
--
-- Built to stay fast at a million runs (docs/design.md, "Costs at scale"): the runs fold
-- is read once (MATERIALIZED, then used for the run rows and for the child-time rollup),
-- and prices are joined from small lookup tables (the GPU-name regex runs once per
-- distinct model, not per run).
--
-- A table macro over the per-run cost inputs named by `inputs` (a table or view with the
-- columns of the cost_inputs view): run_costs is this over cost_inputs (every event
-- folded), and the cost report runs it over the same rows read from cost summaries.
CREATE OR REPLACE MACRO run_costs_over(inputs) AS TABLE
WITH costed AS (SELECT * FROM query_table(inputs)),
folded AS MATERIALIZED (
    SELECT run_id, project, experiment, name, status, "user", start_time, end_time,
           duration_s, parent_run_id
    FROM runs
),
children AS (
    SELECT parent_run_id AS run_id, sum(duration_s) AS child_s
    FROM folded WHERE parent_run_id IS NOT NULL
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
        coalesce(s.sampled, false) AS sampled,
        s.* EXCLUDE (run_id, instance_type, instance_source, region, sampled)
    FROM folded r
    LEFT JOIN costed s USING (run_id)
    LEFT JOIN placement_tags t USING (run_id)
    LEFT JOIN children ch USING (run_id)
),
catalog AS MATERIALIZED (SELECT item, name, rate FROM pricing),
-- One row per distinct GPU model name: its catalog rate (the longest catalog name found
-- in it as a word, so "A100" matches "NVIDIA A100-SXM4-80GB").
gpu_rates AS (
    SELECT m.gpu_model, arg_max(c.rate, length(c.name)) AS gpu_rate
    FROM (SELECT DISTINCT gpu_model FROM costed WHERE gpu_model IS NOT NULL) m
    JOIN catalog c
      ON c.item = 'gpu'
     AND regexp_matches(m.gpu_model, '(^|[^A-Za-z0-9])' || c.name || '([^A-Za-z0-9]|$)', 'i')
    GROUP BY m.gpu_model
),
defaults AS (
    SELECT
        any_value(rate) FILTER (WHERE item = 'cpu_core' AND name = 'default') AS core_rate,
        any_value(rate) FILTER (WHERE item = 'electricity' AND name = 'default') AS default_kwh_rate,
        any_value(rate) FILTER (WHERE item = 'carbon_intensity' AND name = 'default')
            AS default_intensity
    FROM catalog
),
rated AS (
    SELECT
        p.*,
        i.rate AS instance_rate,
        g.gpu_rate,
        d.core_rate,
        coalesce(k.rate, d.default_kwh_rate) AS kwh_rate,
        ci.rate AS region_intensity,
        d.default_intensity
    FROM placed p
    CROSS JOIN defaults d
    LEFT JOIN (SELECT name, rate FROM catalog WHERE item = 'instance') i
        ON i.name = p.instance_type
    LEFT JOIN gpu_rates g ON g.gpu_model = p.gpu_model
    LEFT JOIN (SELECT name, rate FROM catalog WHERE item = 'electricity') k
        ON k.name = p.region
    LEFT JOIN (SELECT name, rate FROM catalog WHERE item = 'carbon_intensity') ci
        ON ci.name = p.region
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
