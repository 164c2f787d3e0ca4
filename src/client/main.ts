/**
 * The `promote` CLI. Exit codes: 0 done; 2 invalid input; 3 refused by the workflow; 4 not found;
 * 1 anything else. Errors are one sentence on stderr.
 */
import { Command, CommanderError, Option } from 'commander';
import { Client } from '@temporalio/client';
import {
  ConflictError,
  InvalidInputError,
  NotAllowedError,
  NotFoundError,
  PlanError,
  formatIssues,
} from '../common/errors';
import { connectClient, connectionSettings } from '../common/connection';
import { loadPlanFile, planJsonSchema } from '../plan/load';
import { PHASES } from '../workflows/types';
import { formatList, formatStatus } from './format';
import { Promotions } from './promotions';
import { formatRecovery, recover } from './recovery';

export const EXIT = { ok: 0, error: 1, invalid: 2, refused: 3, notFound: 4 } as const;

/**
 * Text from a hostile document on one line: control and line-separator characters (a key may hold
 * a newline) escaped as in JSON, so every problem stays one `<file>: <path>: <message>` line.
 */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => {
    const escaped = JSON.stringify(c).slice(1, -1);
    return escaped !== c ? escaped : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

function defaultUser(): string {
  return process.env.PROMOTE_USER ?? process.env.USER ?? 'unknown';
}

async function withPromotions<T>(fn: (p: Promotions) => Promise<T>): Promise<T> {
  const settings = connectionSettings();
  let connection;
  try {
    connection = await connectClient(settings);
  } catch (err) {
    throw new Error(
      `cannot reach Temporal at ${settings.options.address}: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  try {
    return await fn(new Promotions(new Client({ connection, namespace: settings.namespace })));
  } finally {
    await connection.close();
  }
}

const print = (text: string): void => void process.stdout.write(`${text}\n`);

export function buildCli(): Command {
  const program = new Command('promote')
    .description('Durable ML model promotion on Temporal')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('start')
    .description('start promoting a model version with a plan')
    .requiredOption('--model <model>', 'registered model name')
    .requiredOption('--version <version>', 'candidate version')
    .requiredOption('--plan <file>', 'plan file (YAML or JSON)')
    .option('--as <user>', 'who starts it (cannot approve it)', defaultUser())
    .option('--json', 'print the result as JSON')
    .action(async (o: { model: string; version: string; plan: string; as: string; json?: boolean }) => {
      const plan = loadPlanFile(o.plan);
      const started = await withPromotions((p) =>
        p.start({ model: o.model, version: o.version, plan, startedBy: o.as }),
      );
      print(
        o.json
          ? JSON.stringify(started)
          : `started ${started.id} (run ${started.runId}, plan ${started.planHash.slice(0, 19)})`,
      );
    });

  program
    .command('approve <id>')
    .description('approve the pending step (id: promotion id or model name)')
    .requiredOption('--as <user>', 'approver')
    .option('--comment <text>', 'why')
    .action(async (id: string, o: { as: string; comment?: string }) => {
      const r = await withPromotions((p) => p.vote(id, 'approve', o.as, o.comment));
      print(r.message);
    });

  program
    .command('reject <id>')
    .description('reject the pending step; the promotion rolls back')
    .requiredOption('--as <user>', 'approver')
    .requiredOption('--reason <text>', 'why')
    .action(async (id: string, o: { as: string; reason: string }) =>
      print((await withPromotions((p) => p.vote(id, 'reject', o.as, o.reason))).message),
    );

  program
    .command('abort <id>')
    .description('abort the promotion; rollback runs at once')
    .requiredOption('--as <user>', 'who aborts')
    .requiredOption('--reason <text>', 'why')
    .action(async (id: string, o: { as: string; reason: string }) =>
      print((await withPromotions((p) => p.control(id, 'abort', o.as, o.reason))).message),
    );

  for (const kind of ['pause', 'resume'] as const) {
    program
      .command(`${kind} <id>`)
      .description(
        kind === 'pause'
          ? 'hold the promotion where it is (guardrails keep running)'
          : 'continue a paused promotion',
      )
      .option('--as <user>', 'who', defaultUser())
      .option('--reason <text>', 'why')
      .action(async (id: string, o: { as: string; reason?: string }) =>
        print((await withPromotions((p) => p.control(id, kind, o.as, o.reason))).message),
      );
  }

  program
    .command('recover <model>')
    .description(
      'repair what the last promotion of a model left behind when it can no longer do it (terminated, failed, stuck): traffic, aliases, policy, model servers; idempotent',
    )
    .requiredOption('--reason <text>', 'why (recorded on the version)')
    .option('--as <user>', 'who recovers', defaultUser())
    .option('--force', 'terminate the promotion first if it is still running (stuck)')
    .option('--timeout <seconds>', 'how long to wait for a worker to finish it', '120')
    .option('--json', 'print the report as JSON')
    .action(
      async (
        model: string,
        o: { reason: string; as: string; force?: boolean; timeout: string; json?: boolean },
      ) => {
        const timeoutMs = Number(o.timeout) * 1000;
        if (!(timeoutMs > 0)) throw new InvalidInputError('--timeout must be a positive number of seconds');
        const report = await withPromotions((p) =>
          recover(p.client, {
            model,
            by: o.as,
            reason: o.reason,
            force: Boolean(o.force),
            taskQueue: p.taskQueue,
            timeoutMs,
          }),
        );
        print(o.json ? JSON.stringify(report, null, 2) : formatRecovery(report));
        if (!report.consistent) process.exitCode = EXIT.error;
      },
    );

  program
    .command('status <id>')
    .description('show a promotion (id: promotion id or model name)')
    .option('--json', 'print the status as JSON')
    .option('--watch', 'refresh until the promotion completes')
    .action(async (id: string, o: { json?: boolean; watch?: boolean }) => {
      await withPromotions(async (p) => {
        let last = '';
        for (;;) {
          const status = await p.status(id);
          const text = o.json ? JSON.stringify(status, null, 2) : formatStatus(status);
          if (text !== last) print(o.watch && !o.json && last ? `\n${text}` : text);
          last = text;
          if (!o.watch || status.outcome !== null) return;
          await new Promise((r) => setTimeout(r, 2000));
        }
      });
    });

  program
    .command('list')
    .description('list promotions')
    .option('--model <model>', 'only this model')
    .addOption(new Option('--phase <phase>', 'only this phase').choices([...PHASES]))
    .option('--json', 'print JSON')
    .action(async (o: { model?: string; phase?: string; json?: boolean }) => {
      const rows = await withPromotions((p) => p.list(o));
      print(o.json ? JSON.stringify(rows, null, 2) : formatList(rows));
    });

  program
    .command('demo')
    .description(
      'run the demo on the embedded stack: one promotion succeeds, one rolls back, one is stopped by a gate',
    )
    .option('--data <dir>', 'data folder (Temporal database, plane state)', '.data')
    .option('--keep', 'keep the stack running after the demo until Ctrl-C')
    .option(
      '--inprocess',
      'run the story on the in-process simulated plane instead of MLflow, model servers and the gateway',
    )
    .action(async (o: { data: string; keep?: boolean; inprocess?: boolean }) => {
      const { runDemo } = await import('../dev/demo');
      process.exitCode = await runDemo({
        dataDir: o.data,
        keep: Boolean(o.keep),
        inprocess: Boolean(o.inprocess),
      });
    });

  const dev = program.command('dev').description('the embedded development stack');
  dev
    .command('up')
    .description(
      'start the embedded stack: Temporal dev server (UI on :8233), MLflow (:5050) with the demo models, the gateway (:8780) with replayed traffic, model servers, and a worker; Ctrl-C stops it all',
    )
    .option('--data <dir>', 'data folder', '.data')
    .option('--traffic <rate>', 'requests per second replayed through the gateway', '20')
    .option('--inprocess', 'only the in-process simulated plane (no MLflow, model servers or gateway)')
    .action(async (o: { data: string; traffic: string; inprocess?: boolean }) => {
      const { startDevUp } = await import('../dev/up');
      const up = await startDevUp({
        dataDir: o.data,
        trafficRate: Number(o.traffic),
        inprocess: Boolean(o.inprocess),
      });
      print(up.summary);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await up.stop();
    });

  const plan = program.command('plan').description('work with plan files');
  plan
    .command('validate <file>')
    .description('check a plan; prints path: message for every problem (exit 2) or OK')
    .action((file: string) => {
      loadPlanFile(file);
      print(`${file}: OK`);
    });
  plan
    .command('schema')
    .description('print the plan JSON Schema')
    .action(() => print(JSON.stringify(planJsonSchema(), null, 2)));

  return program;
}

/** Runs the CLI and returns the exit code (errors printed as one sentence). */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.invalid;
    if (err instanceof PlanError) {
      const issues = err.issues.map((i) => ({ path: oneLine(i.path), message: oneLine(i.message) }));
      process.stderr.write(
        `${formatIssues(issues)
          .split('\n')
          .map((l) => `${err.source}: ${l}`)
          .join('\n')}\n`,
      );
      return EXIT.invalid;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`promote: ${message}\n`);
    if (err instanceof InvalidInputError) return EXIT.invalid;
    if (err instanceof NotAllowedError || err instanceof ConflictError) return EXIT.refused;
    if (err instanceof NotFoundError) return EXIT.notFound;
    return EXIT.error;
  }
}

if (require.main === module) {
  // Writes to a pipe are asynchronous: exit only once stdout and stderr have taken everything
  // written (the empty writes call back after the writes before them), or long error lists are cut.
  void runCli(process.argv.slice(2)).then((code) =>
    process.stdout.write('', () => process.stderr.write('', () => process.exit(code))),
  );
}
