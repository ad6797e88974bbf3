-- name: grid_cells
-- purpose: every cell of the newest grid of each (side A, side B, test) - or of one grid -
--   with its statistic, uncorrected p, the sweep's Benjamini-Hochberg p_fdr and the
--   family-wise p_fwe from the max-statistic null over the grid's cells; significant marks
--   cells with p_fwe <= alpha, is_best the grid's best cell.
-- param: grid_id INTEGER = NULL  only this grid (NULL: the newest grid of each sides and test)
-- param: test VARCHAR = NULL  only this test (2v2 or rsa; NULL: both)
-- param: alpha DOUBLE = 0.05  family-wise level of the significant column
-- param: level VARCHAR = NULL  only grids over concept means (concept) or stimuli (image);
--   NULL: both (the newest grid of each level)
-- range: alpha = (0, 1); grid_id = [1, ]
-- choices: level = concept, image
-- columns: grid_id, sweep_id, test, side_a, side_b, row_index, col_index, space_a, space_b,
--   layer_a, relative_depth_a, layer_b, relative_depth_b, result_id, statistic, p_value,
--   p_fdr, p_fwe, significant, is_best, n_concepts, n_permutations, seed, item_level
WITH levels AS (
    SELECT grid_id,
        coalesce(json_extract_string(params, '$.items_level'), 'concept') AS item_level
    FROM grids
), newest AS (
    SELECT grid_id FROM (
        SELECT g.grid_id, row_number() OVER (
            PARTITION BY g.side_a, g.side_b, g.test, l.item_level
            ORDER BY g.created_at DESC, g.grid_id DESC) AS rn
        FROM grids AS g
        JOIN levels AS l USING (grid_id)
        WHERE g.kind = 'grid'
    ) WHERE rn = 1
)
SELECT
    grid_id,
    sweep_id,
    test,
    side_a,
    side_b,
    row_index,
    col_index,
    space_a,
    space_b,
    layer_a,
    relative_depth_a,
    layer_b,
    relative_depth_b,
    result_id,
    statistic,
    p_value,
    p_fdr,
    p_fwe,
    coalesce(p_fwe <= CAST($alpha AS DOUBLE), FALSE) AS significant,
    is_best,
    n_concepts,
    n_permutations,
    seed,
    item_level
FROM grid_results
JOIN levels USING (grid_id)
WHERE (CASE WHEN CAST($grid_id AS INTEGER) IS NULL
        THEN grid_id IN (SELECT grid_id FROM newest)
        ELSE grid_id = CAST($grid_id AS INTEGER) END)
    AND (CAST($test AS VARCHAR) IS NULL OR test = CAST($test AS VARCHAR))
    AND (CAST($level AS VARCHAR) IS NULL OR item_level = CAST($level AS VARCHAR))
ORDER BY grid_id, row_index, col_index
