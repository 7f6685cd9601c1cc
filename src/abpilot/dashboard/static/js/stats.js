// The little statistics the browser computes itself: Beta densities and Wilson intervals.

const EDGE = 1e-9; // densities are evaluated this far inside [0, 1]
const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
  -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
  1.5056327351493116e-7,
];

/** log Γ(z) by the Lanczos approximation (about 15 significant digits). */
export function lnGamma(z) {
  if (z < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * z))) - lnGamma(1 - z);
  const shifted = z - 1;
  let sum = LANCZOS[0];
  for (let i = 1; i < LANCZOS_G + 2; i += 1) sum += LANCZOS[i] / (shifted + i);
  const t = shifted + LANCZOS_G + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (shifted + 0.5) * Math.log(t) - t + Math.log(sum);
}

export function lnBeta(a, b) {
  return lnGamma(a) + lnGamma(b) - lnGamma(a + b);
}

/** The density of Beta(a, b) at x (at the ends of [0, 1], just inside them). */
export function betaDensity(x, a, b, logNorm = lnBeta(a, b)) {
  const inside = Math.min(1 - EDGE, Math.max(EDGE, x));
  const left = a === 1 ? 0 : (a - 1) * Math.log(inside);
  const right = b === 1 ? 0 : (b - 1) * Math.log1p(-inside);
  return Math.exp(left + right - logNorm);
}

export function betaMean(a, b) {
  return a / (a + b);
}

export function betaSd(a, b) {
  const total = a + b;
  return Math.sqrt((a * b) / (total * total * (total + 1)));
}

/**
 * Points of the Beta(a, b) density over its own bulk (mean ± 6 sd, inside [0, 1]), so that a
 * narrow posterior is drawn as smoothly as a wide one.
 */
export function betaCurve(a, b, points = 160) {
  const mean = betaMean(a, b);
  const sd = betaSd(a, b);
  const low = Math.max(0, mean - 6 * sd);
  const high = Math.min(1, mean + 6 * sd);
  const logNorm = lnBeta(a, b);
  const curve = [];
  for (let i = 0; i <= points; i += 1) {
    const x = low + ((high - low) * i) / points;
    const y = betaDensity(x, a, b, logNorm);
    curve.push({ x, y: Number.isFinite(y) ? y : 0 });
  }
  return curve;
}

const Z95 = 1.959963984540054;

/** The 95% Wilson score interval of successes / n, or null when n is 0. */
export function wilson(successes, n, z = Z95) {
  if (!n) return null;
  const p = successes / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** The bulk of Beta(a, b): [low, high] at mean ± 8 sd inside [0, 1]. */
function bulk(a, b) {
  const mean = betaMean(a, b);
  const sd = betaSd(a, b);
  return [Math.max(0, mean - 8 * sd), Math.min(1, mean + 8 * sd)];
}

/**
 * P(each Beta(a, b) is the largest) by the trapezoid rule on a common grid:
 * P(i best) = ∫ f_i(x) Π_{j≠i} F_j(x) dx. arms: [{a, b}]; returns one probability per arm.
 */
export function probabilityBest(arms, points = 4000) {
  if (arms.length === 0) return [];
  if (arms.length === 1) return [1];
  const ranges = arms.map((arm) => bulk(arm.a, arm.b));
  const low = Math.min(...ranges.map((r) => r[0]));
  const high = Math.max(...ranges.map((r) => r[1]));
  const step = (high - low) / points;
  const norms = arms.map((arm) => lnBeta(arm.a, arm.b));
  const densities = arms.map(() => 0);
  const cdf = arms.map(() => 0);
  const previous = arms.map((arm, i) => betaDensity(low, arm.a, arm.b, norms[i]));
  const best = arms.map(() => 0);
  for (let k = 1; k <= points; k += 1) {
    const x = low + step * k;
    arms.forEach((arm, i) => {
      densities[i] = betaDensity(x, arm.a, arm.b, norms[i]);
      cdf[i] = Math.min(1, cdf[i] + ((previous[i] + densities[i]) / 2) * step);
    });
    arms.forEach((_arm, i) => {
      let others = 1;
      arms.forEach((_other, j) => {
        if (j !== i) others *= cdf[j];
      });
      best[i] += densities[i] * others * step;
    });
    arms.forEach((_arm, i) => {
      previous[i] = densities[i];
    });
  }
  const total = best.reduce((sum, p) => sum + p, 0);
  return best.map((p) => (total > 0 ? p / total : 1 / arms.length));
}

/** P(X > x) for X ~ Beta(a, b), by the trapezoid rule over the bulk. */
export function betaAbove(x, a, b, points = 4000) {
  const [low, high] = bulk(a, b);
  if (x <= low) return 1;
  if (x >= high) return 0;
  const norm = lnBeta(a, b);
  const step = (high - x) / points;
  let area = 0;
  let previous = betaDensity(x, a, b, norm);
  for (let k = 1; k <= points; k += 1) {
    const density = betaDensity(x + step * k, a, b, norm);
    area += ((previous + density) / 2) * step;
    previous = density;
  }
  return Math.min(1, Math.max(0, area));
}
