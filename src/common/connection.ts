/**
 * Connection settings in Temporal's own conventions: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 * TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE and the Temporal config file (via
 * @temporalio/envconfig). Defaults: localhost:7233, namespace default.
 */
import { Connection } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection } from '@temporalio/worker';

export interface ConnectionSettings {
  options: ReturnType<typeof loadClientConnectConfig>['connectionOptions'];
  namespace: string;
}

export function connectionSettings(): ConnectionSettings {
  const loaded = loadClientConnectConfig();
  return {
    options: { ...loaded.connectionOptions, address: loaded.connectionOptions.address ?? 'localhost:7233' },
    namespace: loaded.namespace ?? 'default',
  };
}

export async function connectClient(settings = connectionSettings()): Promise<Connection> {
  const { address, tls, apiKey, metadata } = settings.options;
  return Connection.connect({ address, tls, apiKey, metadata, connectTimeout: '5s' });
}

export async function connectWorker(settings = connectionSettings()): Promise<NativeConnection> {
  return NativeConnection.connect(settings.options);
}
