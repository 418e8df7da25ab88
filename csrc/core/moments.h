// Count, mean and sum of squared deviations (m2) of a run of values, the
// statistics a norm needs. merge() joins two runs' moments exactly (Chan,
// Golub and LeVeque's pairwise update), so a long run, or an image measured
// window by window (models/vae_tiles.cpp), is summed piece by piece without
// losing the variance to cancellation.
#pragma once

namespace quanta {

struct Moments {
    double n = 0, mean = 0, m2 = 0;
    void merge(const Moments& o) {
        const double total = n + o.n;
        if (total == 0) return;
        const double delta = o.mean - mean;
        mean += delta * o.n / total;
        m2 += o.m2 + delta * delta * n * o.n / total;
        n = total;
    }
    double variance() const { return n > 0 ? m2 / n : 0.0; }  // biased, as torch's norms
};

}  // namespace quanta
