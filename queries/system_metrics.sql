-- Resource samples (CPU, memory, disk, network, GPU) taken while runs were open.
CREATE OR REPLACE VIEW system_metrics AS
SELECT run_id, project, ts, device, key, value
FROM events_system;
