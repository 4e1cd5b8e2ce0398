// @ts-check
// Aggregates a V8 .cpuprofile (node --cpu-prof) by function name + script:
// self time per frame, summed over every node of the call tree.

/**
 * @typedef {{ id: number, callFrame: { functionName: string, url: string, lineNumber: number },
 *   children?: number[] }} ProfileNode
 * @typedef {{ nodes: ProfileNode[], samples: number[], timeDeltas: number[] }} Profile
 */

/**
 * @param {Profile} profile
 * @param {number} top
 */
export function topSelfTime(profile, top) {
  /** @type {Map<number, number>} */
  const selfUs = new Map();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = /** @type {number} */ (profile.samples[i]);
    // A sample's time is the delta to the next sample.
    const delta = Math.max(0, profile.timeDeltas[i + 1] ?? 0);
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
    total += delta;
  }
  /** @type {Map<string, { name: string, where: string, selfUs: number }>} */
  const byFrame = new Map();
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    const where = url ? `${shorten(url)}:${lineNumber + 1}` : '';
    const key = `${name}\u0000${where}`;
    const row = byFrame.get(key) ?? { name, where, selfUs: 0 };
    row.selfUs += us;
    byFrame.set(key, row);
  }
  const rows = [...byFrame.values()]
    .sort((a, b) => b.selfUs - a.selfUs)
    .slice(0, top)
    .map(row => ({ ...row, percent: (100 * row.selfUs) / (total || 1) }));
  return { total, rows };
}

/** Also by file only (for "how much is ioredis vs us vs express"). */
/**
 * @param {Profile} profile
 */
export function selfTimeByFile(profile) {
  /** @type {Map<number, ProfileNode>} */
  const nodes = new Map(profile.nodes.map(n => [n.id, n]));
  /** @type {Map<string, number>} */
  const byFile = new Map();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = nodes.get(/** @type {number} */ (profile.samples[i]));
    const delta = Math.max(0, profile.timeDeltas[i + 1] ?? 0);
    const url = node?.callFrame.url
      ? shorten(node.callFrame.url)
      : `(${node?.callFrame.functionName})`;
    byFile.set(url, (byFile.get(url) ?? 0) + delta);
    total += delta;
  }
  return { total, rows: [...byFile.entries()].sort((a, b) => b[1] - a[1]) };
}

/** @param {string} url */
function shorten(url) {
  const path = url.replace(/^file:\/\//, '');
  const modules = path.lastIndexOf('node_modules/');
  if (modules >= 0) return path.slice(modules + 'node_modules/'.length);
  const dist = path.indexOf('/dist/');
  if (dist >= 0) return path.slice(dist + 1);
  return path.replace(/^.*\/(bench|lib|scripts)\//, '$1/');
}
