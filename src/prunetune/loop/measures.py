"""The damage measures a run reads (pruning/damage.py's MEASURES), with their inputs built once per run on
first use: held-out calibration text, its answer tokens, and the dense model's own generations for the KL."""

from __future__ import annotations

from prunetune.checkpoint import load_model
from prunetune.loop.recipe import Recipe
from prunetune.pruning.damage import held_out_loss


class Measures:
    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self._held_out = None
        self._answer, self._reference = None, None

    def held_out(self, tok) -> list[dict]:
        """Held-out calibration text for damage: another draw of the calibration source (the file's tail)."""
        if self._held_out is None:
            from prunetune.pruning.damage import held_out_batches

            p = self.recipe.prune
            self._held_out = held_out_batches(tok, self._pairs(), max_length=p.max_length)
        return self._held_out

    def all(self, tok) -> dict:
        """name -> model -> the measure's value."""
        from prunetune.pruning.damage import held_out_batches, kl_to_reference

        if self._answer is None:
            from prunetune.pruning.damage import answer_pairs, dense_reference

            pairs = self._pairs()
            self._answer = held_out_batches(tok, answer_pairs(pairs), max_length=self.recipe.prune.max_length)
            dense, _ = load_model(self.recipe.model, self.recipe.dtype)  # the KL's reference: the dense model
            self._reference = dense_reference(dense, tok, [q for q, _ in pairs])
            del dense
        held_out, answer, ref = self.held_out(tok), self._answer, self._reference
        return {"held_out": lambda m: held_out_loss(m, held_out), "answer": lambda m: held_out_loss(m, answer),
                "kl": lambda m: kl_to_reference(m, ref)}

    def _pairs(self):
        from prunetune.data import held_out_pairs

        p = self.recipe.prune
        return held_out_pairs(p.calibration, field=p.text_field, limit=self.recipe.schedule.held_out_samples,
                              seed=self.recipe.seed)
