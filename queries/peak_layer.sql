-- name: peak_layer
-- purpose: the layer where each model agrees most with each word space: the layer of highest
--   2 vs 2 accuracy and the layer of highest RSA rho (ties go to the shallower layer), read
--   from the layer_curves view.
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- param: word_space VARCHAR = NULL  only this word space (NULL: every word space)
-- param: level VARCHAR = 'concept'  concept (concept means) or image (stimuli)
-- columns: model, word_space, n_layers, peak_layer_2v2, peak_depth_2v2,
--   peak_relative_depth_2v2, peak_accuracy_2v2, last_layer, last_accuracy_2v2,
--   peak_layer_rsa, peak_relative_depth_rsa, peak_rho_rsa
-- choices: level = concept, image
WITH c AS (
    SELECT * FROM layer_curves
    WHERE (CAST($model AS VARCHAR) IS NULL OR model = CAST($model AS VARCHAR))
        AND (CAST($word_space AS VARCHAR) IS NULL OR word_space = CAST($word_space AS VARCHAR))
        AND level = CAST($level AS VARCHAR)
), ranked AS (
    SELECT *,
        row_number() OVER (PARTITION BY model, word_space
            ORDER BY accuracy_2v2 DESC, depth_index ASC) AS rank_2v2,
        row_number() OVER (PARTITION BY model, word_space
            ORDER BY rho_rsa DESC NULLS LAST, depth_index ASC) AS rank_rsa,
        row_number() OVER (PARTITION BY model, word_space
            ORDER BY depth_index DESC) AS rank_last,
        count(*) OVER (PARTITION BY model, word_space) AS n_layers
    FROM c
)
SELECT
    a.model,
    a.word_space,
    a.n_layers,
    a.layer AS peak_layer_2v2,
    a.depth_index AS peak_depth_2v2,
    a.relative_depth AS peak_relative_depth_2v2,
    a.accuracy_2v2 AS peak_accuracy_2v2,
    l.layer AS last_layer,
    l.accuracy_2v2 AS last_accuracy_2v2,
    r.layer AS peak_layer_rsa,
    r.relative_depth AS peak_relative_depth_rsa,
    r.rho_rsa AS peak_rho_rsa
FROM ranked AS a
JOIN ranked AS l ON l.model = a.model AND l.word_space = a.word_space AND l.rank_last = 1
JOIN ranked AS r ON r.model = a.model AND r.word_space = a.word_space AND r.rank_rsa = 1
WHERE a.rank_2v2 = 1
ORDER BY a.word_space, a.model
