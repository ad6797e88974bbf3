-- name: first_significant_depth
-- purpose: the shallowest layer of each model whose 2 vs 2 accuracy against a word space is
--   significant after Benjamini-Hochberg FDR (p_fdr <= alpha), and how many layers are.
--   Models with no significant layer appear with NULL first_* columns.
-- param: alpha DOUBLE = 0.05  FDR level
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- param: word_space VARCHAR = NULL  only this word space (NULL: every word space)
-- param: level VARCHAR = 'concept'  concept (concept means) or image (stimuli)
-- range: alpha = (0, 1)
-- columns: model, word_space, n_layers, n_significant, first_layer, first_depth_index,
--   first_relative_depth, first_accuracy_2v2, first_p_fdr_2v2
-- choices: level = concept, image
WITH c AS (
    SELECT *, p_fdr_2v2 <= CAST($alpha AS DOUBLE) AS significant FROM layer_curves
    WHERE (CAST($model AS VARCHAR) IS NULL OR model = CAST($model AS VARCHAR))
        AND (CAST($word_space AS VARCHAR) IS NULL OR word_space = CAST($word_space AS VARCHAR))
        AND level = CAST($level AS VARCHAR)
), firsts AS (
    SELECT *, row_number() OVER (PARTITION BY model, word_space ORDER BY depth_index) AS rn
    FROM c WHERE significant
), counts AS (
    SELECT model, word_space, count(*) AS n_layers,
        count(*) FILTER (WHERE significant) AS n_significant
    FROM c GROUP BY model, word_space
)
SELECT
    n.model,
    n.word_space,
    n.n_layers,
    n.n_significant,
    f.layer AS first_layer,
    f.depth_index AS first_depth_index,
    f.relative_depth AS first_relative_depth,
    f.accuracy_2v2 AS first_accuracy_2v2,
    f.p_fdr_2v2 AS first_p_fdr_2v2
FROM counts AS n
LEFT JOIN firsts AS f ON f.model = n.model AND f.word_space = n.word_space AND f.rn = 1
ORDER BY n.word_space, n.model
