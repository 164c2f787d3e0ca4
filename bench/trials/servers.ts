/**
 * The model servers of this trial as the supervisor records them (servers.json) and as /proc shows
 * them. A model server gets `MLFLOW_TRACKING_URI=<this trial's MLflow>` in its environment
 * (src/serving/supervisor.ts), which no other process on the machine carries: that is how its
 * processes are found, grouped by process group, without matching anything by name.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cmdline, environ, processGroup, stopGroup } from '../../src/common/processes';
import type { ServerRecord } from '../../src/serving/supervisor';

export function serverRecords(serversDir: string): ServerRecord[] {
  try {
    const parsed = JSON.parse(readFileSync(join(serversDir, 'servers.json'), 'utf8')) as Record<
      string,
      ServerRecord
    >;
    return Object.values(parsed);
  } catch {
    return [];
  }
}

export interface ServerGroup {
  pgid: number;
  pids: number[];
  /** The version its processes serve (`models:/<model>/<version>` in an argv), null if none says. */
  model: string | null;
  version: string | null;
}

/** Live process groups whose processes run with this trial's tracking URI. */
export function serverGroups(trackingUri: string): ServerGroup[] {
  const tag = `MLFLOW_TRACKING_URI=${trackingUri}`;
  const groups = new Map<number, ServerGroup>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  for (const entry of entries) {
    const pid = Number(entry);
    if (pid === process.pid || !(environ(pid)?.includes(tag) ?? false)) continue;
    const pgid = processGroup(pid);
    if (pgid === null) continue;
    let group = groups.get(pgid);
    if (!group) groups.set(pgid, (group = { pgid, pids: [], model: null, version: null }));
    group.pids.push(pid);
    const uri = (cmdline(pid) ?? []).find((a) => a.startsWith('models:/'));
    const match = uri ? /^models:\/([^/]+)\/([^/\s]+)$/.exec(uri) : null;
    if (match) {
      group.model = match[1]!;
      group.version = match[2]!;
    }
  }
  return [...groups.values()];
}

/**
 * Stops every model server of the trial, found in /proc by its tracking URI (a recorded pid alone
 * is not trusted: it may belong to another process by now).
 */
export async function stopModelServers(trackingUri: string): Promise<number[]> {
  const pgids = serverGroups(trackingUri).map((g) => g.pgid);
  for (const pgid of pgids) await stopGroup(pgid, 5000);
  return pgids;
}
