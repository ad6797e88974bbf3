-- name: peak_inference
-- purpose: the peak layer of each model against each target with its family-wise p (from
--   the max-statistic null across the model's layers: each permutation scores every layer
--   with the same relabelling of the target's concepts) and the concept-bootstrap interval
--   of the peak's relative depth; the newest peak-layer test of each (model, target, test)
--   and item level (item_level: concept means or stimuli; the column level is the depth
--   interval's confidence level).
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- param: target VARCHAR = NULL  only this target space (NULL: every target)
-- param: level VARCHAR = NULL  only peaks over concept means (concept) or stimuli
--   (image); NULL: both (the newest of each)
-- choices: level = concept, image
-- columns: model, target, test, n_layers, peak_layer, peak_space, statistic, p_fwe,
--   peak_relative_depth, depth_ci_low, depth_ci_high, level, n_bootstrap, n_concepts,
--   n_permutations, seed, sweep_id, grid_id, item_level
WITH peaks AS (
    SELECT *, coalesce(json_extract_string(params, '$.items_level'), 'concept') AS item_level
    FROM grids
    WHERE kind = 'peak'
        AND (CAST($model AS VARCHAR) IS NULL OR side_a = CAST($model AS VARCHAR))
        AND (CAST($target AS VARCHAR) IS NULL OR side_b = CAST($target AS VARCHAR))
), ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY side_a, side_b, test, item_level ORDER BY created_at DESC, grid_id DESC
    ) AS rn
    FROM peaks
    WHERE CAST($level AS VARCHAR) IS NULL OR item_level = CAST($level AS VARCHAR)
)
SELECT
    g.side_a AS model,
    g.side_b AS target,
    g.test,
    g.n_rows AS n_layers,
    s.layer AS peak_layer,
    g.best_space_a AS peak_space,
    g.best_statistic AS statistic,
    g.p_fwe_best AS p_fwe,
    g.peak_relative_depth,
    g.depth_ci_low,
    g.depth_ci_high,
    g.level,
    g.n_bootstrap,
    g.n_concepts,
    g.n_permutations,
    g.seed,
    g.sweep_id,
    g.grid_id,
    g.item_level
FROM ranked AS g
LEFT JOIN spaces AS s ON s.name = g.best_space_a
WHERE g.rn = 1
ORDER BY g.side_b, g.side_a, g.test, g.item_level
