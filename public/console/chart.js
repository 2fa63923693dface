// Time-series charts (uPlot), and the rolling window of samples they draw.
import { html } from "htm/preact";
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

export const WINDOW_MS = 10 * 60_000;

/** Samples of named values over the last WINDOW_MS: add(key, { running: 3, … }) at now. */
export class Series {
  constructor() {
    this.byKey = new Map();
  }

  add(key, values, at = Date.now()) {
    const samples = this.byKey.get(key) ?? [];
    samples.push({ at, values });
    while (samples.length > 0 && samples[0].at < at - WINDOW_MS) samples.shift();
    this.byKey.set(key, samples);
  }

  /** uPlot's columns: [times in seconds, values of names[0], …]. */
  columns(key, names) {
    const samples = this.byKey.get(key) ?? [];
    return [samples.map((s) => s.at / 1000), ...names.map((n) => samples.map((s) => s.values[n] ?? null))];
  }
}

const COLORS = ["#1d4ed8", "#d97706", "#059669", "#b42318"];

/** A line chart of columns (see Series.columns), one line per label; sized to its container. */
export function LineChart({ title, labels, data, height = 140 }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const opts = {
      width: Math.max(200, box.current.clientWidth),
      height,
      series: [{}, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false }))],
      axes: [{}, { size: 40 }],
      scales: {
        // Always the last WINDOW_MS, up to now, however few samples there are yet.
        x: { time: true, range: () => [(Date.now() - WINDOW_MS) / 1000, Date.now() / 1000] },
        y: { range: (_u, _min, max) => [0, Math.max(1, (max ?? 0) * 1.1)] },
      },
      legend: { live: false },
    };
    plot.current = new uPlot(opts, data, box.current);
    const resize = new ResizeObserver(() => plot.current.setSize({ width: Math.max(200, box.current.clientWidth), height }));
    resize.observe(box.current);
    return () => {
      resize.disconnect();
      plot.current.destroy();
    };
  }, [title, labels.join(",")]);
  useEffect(() => plot.current?.setData(data), [data]);
  return html`<figure class="chart" role="img" aria-label=${`${title}: ${labels.join(", ")} over the last ${WINDOW_MS / 60_000} minutes`}>
    <div ref=${box}></div>
  </figure>`;
}
