/** Human-readable renderings of promotion status for the CLI. */
import type { ListedPromotion } from './promotions';
import type { PromotionStatus } from '../workflows/types';

export function formatStatus(s: PromotionStatus): string {
  const lines = [
    `${s.id}  ${s.model} ${s.candidate} (champion ${s.champion ?? '?'})`,
    `phase:    ${s.phase}${s.outcome ? ` (${s.outcome})` : ''}`,
    `traffic:  ${s.trafficPercent}% on ${s.candidate}` +
      (s.step.index >= 0 ? `, step ${s.step.index + 1} of ${s.step.total}` : ''),
  ];
  if (s.reason) lines.push(`reason:   ${s.reason}`);
  if (s.paused) lines.push(`paused:   by ${s.paused.by}: ${s.paused.reason}`);
  const p = s.pendingApproval;
  if (p) {
    lines.push(
      `approval: step ${p.step + 1} needs ${p.required} of [${p.approvers.join(', ')}], ${p.received} received` +
        (p.expiresAt ? `, expires ${p.expiresAt}` : ', no expiry while paused'),
    );
  }
  for (const c of s.lastChecks) lines.push(`check:    ${c.subject}: ${c.verdict} (${c.evidence})`);
  if (s.lease) {
    const trouble =
      s.lease.failures > 0 ? `; ${s.lease.failures} renewal(s) failed: ${s.lease.lastError}` : '';
    lines.push(
      `lease:    held, renewed ${s.lease.renewedAt} (expires ${s.lease.ttlMs / 1000}s after a renewal)${trouble}`,
    );
  }
  if (s.compensation) {
    const c = s.compensation;
    lines.push(`failing:  ${c.step}: ${c.attempts} attempt(s) since ${c.since}, retrying: ${c.error}`);
  }
  if (s.refusalsTotal > 0) {
    lines.push(`refused:  ${s.refusalsTotal} message(s), latest:`);
    for (const r of s.refusals.slice(0, 3))
      lines.push(
        `  ${r.last.slice(11, 19)} ${r.what} by ${r.who}: ${r.why}${r.count > 1 ? ` (x${r.count})` : ''}`,
      );
  }
  lines.push(`plan:     ${s.planHash.slice(0, 19)}  started by ${s.startedBy} at ${s.startedAt}`);
  lines.push('decisions:');
  if (s.decisionsDropped > 0) lines.push(`  (${s.decisionsDropped} older entries dropped)`);
  for (const d of s.decisions.slice(-15)) {
    lines.push(`  ${d.at.slice(11, 19)} ${d.kind.padEnd(18)} ${d.by.padEnd(8)} ${d.reason}`);
  }
  if (s.decisions.length > 15) lines.push(`  (${s.decisions.length - 15} earlier; --json shows all)`);
  return lines.join('\n');
}

export function formatList(rows: ListedPromotion[]): string {
  if (rows.length === 0) return 'no promotions';
  const header = ['ID', 'MODEL', 'CANDIDATE', 'PHASE', 'OUTCOME', 'TRAFFIC', 'STARTED'];
  const table = rows.map((r) => [
    r.id,
    r.model ?? '',
    r.candidate ?? '',
    r.phase ?? r.status.toLowerCase(),
    r.outcome ?? '',
    r.trafficPercent === null ? '' : `${r.trafficPercent}%`,
    r.startTime.slice(0, 19).replace('T', ' '),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  return [header, ...table]
    .map((row) =>
      row
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
