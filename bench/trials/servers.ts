/**
 * The model servers of this trial as the supervisor records them (servers.json) and as /proc shows
 * them. A model server gets `MLFLOW_TRACKING_URI=<this trial's MLflow>` in its minimal environment
 * (src/serving/supervisor.ts), which no process outside this trial carries; inside it, the MLflow
 * server's own helper processes carry it too, but they also carry the pid-file marker of the
 * harness's children (PROMOTE_DEV_CHILD), which model servers never get. That is how model server
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
  /** The argv of its first process, shortened (for reports). */
  command: string;
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
    const env = environ(pid);
    if (pid === process.pid || !env?.includes(tag) || env.some((e) => e.startsWith('PROMOTE_DEV_CHILD=')))
      continue;
    const pgid = processGroup(pid);
    if (pgid === null) continue;
    let group = groups.get(pgid);
    const argv = cmdline(pid) ?? [];
    if (!group)
      groups.set(
        pgid,
        (group = { pgid, pids: [], model: null, version: null, command: argv.join(' ').slice(0, 200) }),
      );
    group.pids.push(pid);
    const uri = argv.find((a) => a.startsWith('models:/'));
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
