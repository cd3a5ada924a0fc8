-- Cost, energy and emissions records of each run, with where each figure came from.
CREATE OR REPLACE VIEW costs AS
SELECT
    run_id,
    project,
    ts,
    kind,
    source,
    cost_usd,
    energy_kwh,
    cpu_energy_kwh,
    gpu_energy_kwh,
    ram_energy_kwh,
    emissions_kg,
    measured,
    attrs
FROM events_costs;
