-- name: model_comparison
-- purpose: models side by side at equal relative depth: relative depth (0 = first probed
--   layer, 1 = last) is cut into `bins` equal bins (1.0 falls in the last bin); per word
--   space, bin and model, the mean 2 vs 2 accuracy and mean RSA rho of the model's layers in
--   that bin, from the layer_curves view. Bins where a model has no layer are absent.
-- param: bins INTEGER = 5  number of equal relative-depth bins
-- param: word_space VARCHAR = NULL  only this word space (NULL: every word space)
-- param: level VARCHAR = 'concept'  concept (concept means) or image (stimuli)
-- range: bins = [1, 1000]
-- choices: level = concept, image
-- columns: word_space, depth_bin, depth_low, depth_high, model, n_layers, mean_accuracy_2v2,
--   max_accuracy_2v2, mean_rho_rsa
WITH c AS (
    SELECT *,
        least(CAST(floor(relative_depth * CAST($bins AS INTEGER)) AS INTEGER),
              CAST($bins AS INTEGER) - 1) AS depth_bin
    FROM layer_curves
    WHERE (CAST($word_space AS VARCHAR) IS NULL OR word_space = CAST($word_space AS VARCHAR))
        AND level = CAST($level AS VARCHAR)
)
SELECT
    word_space,
    depth_bin,
    depth_bin / CAST($bins AS DOUBLE) AS depth_low,
    (depth_bin + 1) / CAST($bins AS DOUBLE) AS depth_high,
    model,
    count(*) AS n_layers,
    avg(accuracy_2v2) AS mean_accuracy_2v2,
    max(accuracy_2v2) AS max_accuracy_2v2,
    avg(rho_rsa) AS mean_rho_rsa
FROM c
GROUP BY word_space, depth_bin, model
ORDER BY word_space, depth_bin, model
