// Wires one control-plane process: store, revision feed and sync fan-out,
// node and counter tracking, expiry and retention, the gRPC and HTTP servers.
// Several processes may run on one database; each serves agents and follows
// every other's writes through LISTEN/NOTIFY.
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { CounterAggregator } from './counters/counter-aggregator.js';
import { ControlPlaneMetrics } from './counters/metrics.js';
import { startGrpcServer } from './grpc/grpc-server.js';
import { startHttpServer } from './http/http-server.js';
import { registerImportRoute } from './http/import-route.js';
import { registerJsonApi } from './http/json-api.js';
import { registerListRoutes } from './http/list-routes.js';
import { ListMetrics } from './lists/list-metrics.js';
import { ListRefresher } from './lists/list-refresher.js';
import { ListScheduler } from './lists/list-scheduler.js';
import { ListStore } from './lists/list-store.js';
import { ListService } from './services/list-service.js';
import { HttpRouter, sendJson, sendText } from './http/router.js';
import { ExpirySweeper } from './maintenance/expiry-sweeper.js';
import { NodeReaper } from './maintenance/node-reaper.js';
import { RetentionPruner } from './maintenance/retention-pruner.js';
import { HealthMonitor } from './health-monitor.js';
import { PageTokens } from './rules/page-token.js';
import { CapacityGuard } from './services/capacity-guard.js';
import { CounterService } from './services/counter-service.js';
import { ExplainService } from './services/explain-service.js';
import { EventFanout } from './inspect/event-fanout.js';
import { InspectHub } from './inspect/inspect-hub.js';
import { registerInspectRoutes } from './inspect/inspect-http.js';
import { InspectService, MAX_WINDOW_MS } from './inspect/inspect-service.js';
import { NodeService } from './services/node-service.js';
import { RuleService } from './services/rule-service.js';
import { ChangeLog } from './store/change-log.js';
import { CounterStore } from './store/counter-store.js';
import { openDatabase } from './store/database.js';
import { NodeStore } from './store/node-store.js';
import { RuleStore } from './store/rule-store.js';
import { AgentSession, SessionRegistry } from './sync/agent-session.js';
import { NodeTracker } from './sync/node-tracker.js';
import { RevisionFeed } from './sync/revision-feed.js';
import { RuleCache } from './sync/rule-cache.js';
import { SyncHub } from './sync/sync-hub.js';
import { LocalBulkWrites } from './sync/bulk-handoff.js';
import { checkHttpAccessTable } from './auth/http-auth.js';
import { setUpSecurity } from './auth/security.js';
import type { SecurityMode } from './auth/security-mode.js';
import { AuditService } from './services/audit-service.js';
import { TokenService } from './services/token-service.js';
import { AuditStore } from './store/audit-store.js';
import { TokenStore } from './store/token-store.js';
import { EnrollmentService } from './enrollment/enrollment-service.js';
import { NodeAdmission } from './enrollment/node-admission.js';
import { NodeIdentityService } from './enrollment/node-identity-service.js';
import { loadSigningCa } from './pki/pki-files.js';
import { JoinTokenStore } from './store/join-token-store.js';
import { NodeIdentityStore } from './store/node-identity-store.js';
import { CounterScope } from './sync/counter-scope.js';
import { createLockoutGuard } from './lockout/guard-setup.js';
import { LockoutSessionHooks } from './lockout/session-hooks.js';
import { NodePeerStore } from './store/node-peers.js';

// Calls bounded by their own settings rather than FLEETWALL_CALL_TIMEOUT: adding or refreshing a list
// (FLEETWALL_LIST_FETCH_TIMEOUT, then a write under the statement timeout) and an import over HTTP
// (FLEETWALL_IMPORT_IDLE_TIMEOUT, FLEETWALL_IMPORT_TIMEOUT; over gRPC it is a stream, never deadlined).
const UNTIMED_METHODS: ReadonlySet<string> = new Set(['ListService/CreateList', 'ListService/RefreshList']);
const UNTIMED_ROUTES: ReadonlySet<string> = new Set(['POST /v1/rules:import', 'POST /v1/lists', 'POST /v1/lists/:name/refresh']);

export interface ControlPlane {
  /** This process's id (SyncStart.control_plane_id, Node.control_plane_id). */
  readonly id: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  /** The database's identity (SyncStart.store_id). */
  readonly storeId: string;
  readonly databaseUrl: string;
  /** How callers are trusted (auth/security-mode.ts). */
  readonly security: SecurityMode;
  /** Graceful: agents are told to reconnect elsewhere, state is flushed, embedded Postgres stops. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra HTTP routes (tests, embedding); admin-only unless added with an access of their own. */
  readonly routes?: (router: Pick<HttpRouter, 'add'>) => void;
}

export async function startControlPlane(config: Config, logger: Logger, options: StartOptions = {}): Promise<ControlPlane> {
  const log = logger.child({ cp: config.controlPlaneId });
  const db = await openDatabase(config, log);
  const cleanup: (() => Promise<void>)[] = [() => db.close()];
  try {
    const { sql, readSql } = db;
    const ruleStore = new RuleStore(sql, readSql);
    const changeLog = new ChangeLog(sql);
    const nodeStore = new NodeStore(sql, 3 * config.pingIntervalMs + config.nodeFlushIntervalMs + 1000, readSql);
    const counterStore = new CounterStore(readSql);
    const cache = new RuleCache();
    const hub = new SyncHub(cache, config.syncChunkBytes);
    const registry = new SessionRegistry();
    const localBulk = new LocalBulkWrites();
    const counters = new CounterAggregator(sql, config.counterFlushIntervalMs, log.child({ component: 'counters' }), (id) =>
      cache.knows(id),
    );
    const nodes = new NodeTracker(sql, config.controlPlaneId, config.nodeFlushIntervalMs, log.child({ component: 'nodes' }));
    const metrics = new ControlPlaneMetrics({
      counters: counterStore,
      flushCounters: () => counters.settleForRead(),
      topRules: config.metricsTopRules,
      connectedAgents: () => hub.sessionCount,
      syncGroups: () => hub.groupCount,
      connectedNodes: () => nodes.connected(),
      revision: () => cache.revision,
      cachedRules: () => cache.size,
      controlPlaneId: config.controlPlaneId,
    });
    const counterScope = new CounterScope(cache, hub, metrics.registry);
    const feed = new RevisionFeed(
      sql,
      changeLog,
      cache,
      (revision, commitTime, transitions) => {
        counterScope.record(transitions);
        const stats = hub.publish(revision, commitTime, transitions);
        metrics.observeFanout(Date.now() - commitTime.getTime(), stats.sessions);
      },
      () => {
        for (const s of [...registry.all]) s.shutdown('RESYNC_REQUIRED');
      },
      config.feedPollIntervalMs,
      log.child({ component: 'feed' }),
      localBulk,
    );
    await feed.start();
    cleanup.unshift(() => feed.stop());

    const limits = {
      maxBatch: config.maxBatch,
      maxImportLines: config.maxImportLines,
      maxImportBytes: config.maxImportBytes,
      maxConcurrentImports: config.maxConcurrentImports,
      importIdleTimeoutMs: config.importIdleTimeoutMs,
      importTimeoutMs: config.importTimeoutMs,
      maxCommentLength: config.maxCommentLength,
    };
    const pageTokens = new PageTokens(db.pageTokenKey);
    const capacity = new CapacityGuard(nodeStore, cache);
    const peerStore = new NodePeerStore(sql);
    const guard = await createLockoutGuard(config, peerStore, log.child({ component: 'lockout' }));
    const rules = new RuleService(ruleStore, sql, limits, pageTokens, undefined, {
      handoff: localBulk,
      logger: log.child({ component: 'rules' }),
      capacity,
      guard,
    });
    const nodeService = new NodeService({
      nodes: nodeStore,
      rules: ruleStore,
      tokens: pageTokens,
      settle: () => nodes.settleForRead(),
      forget: (name) => counters.forget(name),
    });
    const counterService = new CounterService(counterStore, nodeStore, () => counters.settleForRead());
    const explain = new ExplainService(ruleStore, nodeStore, peerStore);
    const tokenStore = new TokenStore(sql);
    const tokens = new TokenService(tokenStore);
    const audit = new AuditService(new AuditStore(sql), pageTokens);
    const security = await setUpSecurity(config, {
      sql,
      tokens: tokenStore,
      registry: metrics.registry,
      logger: log.child({ component: 'auth' }),
    });
    cleanup.unshift(() => security.stop());
    const identities = new NodeIdentityStore(sql);
    const admission = new NodeAdmission(security.mode, identities, log.child({ component: 'node-identity' }));
    await admission.start(sql);
    cleanup.unshift(() => admission.stop());
    const enrollment = new EnrollmentService({
      mode: security.mode,
      // The own PKI signs node certificates; operator-given certificates come without a CA key.
      signer: () => (config.tlsCertFile === undefined ? loadSigningCa(config.dataDir) : undefined),
      caBundle: () => security.tlsFiles?.current.ca?.toString('utf8'),
      tokens: new JoinTokenStore(sql),
      identities,
      nodeCertTtlMs: config.nodeCertTtlMs,
      onFailure: security.countFailure,
    });
    const nodeIdentity = new NodeIdentityService(identities);
    const listStore = new ListStore(sql);
    const listRefresher = new ListRefresher(
      sql,
      listStore,
      {
        fetch: {
          timeoutMs: config.listFetchTimeoutMs,
          maxBytes: config.listMaxBytes,
          userAgent: 'fleetwall (list refresh)',
          fileRoot: config.listFileRoot,
        },
        maxInvalidPercent: config.listMaxInvalidPercent,
        maxShrinkPercent: config.listMaxShrinkPercent,
        retryIntervalMs: config.listRetryIntervalMs,
        controlPlaneId: config.controlPlaneId,
        lockout: guard,
      },
      log.child({ component: 'lists' }),
      new ListMetrics(metrics.registry, listStore),
    );
    const lists = new ListService(listStore, listRefresher, {
      minEveryMs: config.listMinEveryMs,
      maxCommentLength: config.maxCommentLength,
      fileRoot: config.listFileRoot,
    });
    const inspectHub = new InspectHub({ historySize: config.eventHistory, historyMs: MAX_WINDOW_MS }, metrics.registry);
    const fanout = new EventFanout(sql, config.controlPlaneId, (ev) => inspectHub.fanIn(ev), log.child({ component: 'events' }));
    await fanout.start();
    cleanup.unshift(() => fanout.stop());
    inspectHub.setFanout(fanout);
    const inspect = new InspectService(inspectHub);

    const sessionDeps = {
      hub,
      cache,
      feed,
      changeLog,
      nodes,
      counters,
      inspect: inspectHub,
      registry,
      metrics,
      admission,
      counterScope,
      storeId: db.storeId,
      controlPlaneId: config.controlPlaneId,
      pingIntervalMs: config.pingIntervalMs,
      helloTimeoutMs: config.helloTimeoutMs,
      resumeMaxRevisions: config.resumeMaxRevisions,
      resumeMaxChanges: config.resumeMaxChanges,
      chunkBytes: config.syncChunkBytes,
      maxQueueBytes: config.maxAgentQueueBytes,
      maxLagMs: config.maxAgentLagMs,
      logger: log.child({ component: 'sync' }),
      lockout: new LockoutSessionHooks(guard, peerStore, log.child({ component: 'lockout' })),
    };
    const grpcLog = log.child({ component: 'grpc' });
    const grpc = await startGrpcServer(
      config.grpcHost,
      config.grpcPort,
      config.maxMessageBytes,
      {
        rules,
        nodes: nodeService,
        counters: counterService,
        explain,
        sync: (call) => void new AgentSession(call, sessionDeps),
        tokens,
        audit,
        enrollment,
        nodeIdentity,
        lists,
        inspect,
      },
      {
        logger: grpcLog,
        countRequest: (method, code) => metrics.grpcRequests.inc({ method, code: String(code) }),
        callTimeoutMs: config.callTimeoutMs,
        untimedMethods: UNTIMED_METHODS,
      },
      { credentials: security.grpcCredentials, interceptor: security.grpcInterceptor },
      { maxConcurrentStreams: config.grpcMaxConcurrentStreams },
    );
    cleanup.unshift(() => grpc.stop(2000));

    const pinger = setInterval(() => {
      const now = Date.now();
      for (const s of [...registry.all]) s.tick(now);
    }, config.pingIntervalMs);
    pinger.unref();
    cleanup.unshift(async () => clearInterval(pinger));

    nodes.start();
    counters.start();
    cleanup.unshift(async () => {
      nodes.stop();
      counters.stop();
      await nodes.disconnectAll().catch((err) => log.warn({ err }, 'final node flush failed'));
      await counters.detachAll().catch((err) => log.warn({ err }, 'final counter flush failed'));
    });
    const sweeper = new ExpirySweeper(ruleStore, config.expirySweepIntervalMs, log.child({ component: 'expiry' }));
    sweeper.start();
    const pruner = new RetentionPruner(
      changeLog,
      config.changeRetentionMs,
      config.retentionPruneIntervalMs,
      log.child({ component: 'retention' }),
    );
    pruner.start();
    const reaper = new NodeReaper(
      nodeStore,
      config.nodeRetentionMs,
      config.nodeGcIntervalMs,
      (names) => {
        for (const n of names) counters.forget(n);
      },
      log.child({ component: 'node-gc' }),
    );
    reaper.start();
    const listScheduler = new ListScheduler(listStore, listRefresher, config.listPollIntervalMs, log.child({ component: 'lists' }));
    listScheduler.start();
    cleanup.unshift(() => {
      listRefresher.stop();
      return Promise.all([sweeper.stop(), pruner.stop(), reaper.stop(), listScheduler.stop()]).then(() => undefined);
    });

    const health = new HealthMonitor(readSql, [nodes, counters], (serving) => grpc.setServing(serving), log.child({ component: 'health' }));
    cleanup.unshift(async () => health.stop());

    const router = new HttpRouter(log.child({ component: 'http' }), { callTimeoutMs: config.callTimeoutMs, untimedRoutes: UNTIMED_ROUTES });
    router.add('GET', '/metrics', async (_req, res) => {
      const m = await metrics.render();
      sendText(res, 200, m.body, m.contentType);
    });
    router.add('GET', '/healthz', async (_req, res) => {
      const h = await health.check();
      sendJson(res, h.status === 'ok' ? 200 : 503, {
        ...h,
        controlPlaneId: config.controlPlaneId,
        revision: cache.revision.toString(),
        agents: hub.sessionCount,
        security: security.mode,
        ...(security.mode === 'insecure' ? { warning: 'insecure: no TLS, no authentication (--insecure-no-auth)' } : {}),
      });
    });
    registerJsonApi(router, {
      rules,
      nodes: nodeService,
      counters: counterService,
      explain,
      tokens,
      audit,
      enrollment,
      nodeIdentity,
      maxMessageBytes: config.maxMessageBytes,
    });
    registerImportRoute(router, { rules });
    registerListRoutes(router, { lists, maxMessageBytes: config.maxMessageBytes });
    registerInspectRoutes(router, inspect);
    // Routes from the embedder (tests) are admin-only unless they say otherwise.
    options.routes?.({ add: (m, p, h, access) => router.add(m, p, h, access ?? 'admin') });
    checkHttpAccessTable(router.list());
    router.setGuard(security.httpGuard);
    const http = await startHttpServer(config.httpHost, config.httpPort, router, log.child({ component: 'http' }), security.tlsFiles);
    cleanup.unshift(() => http.close());

    health.start();
    security.announce(grpc.port, http.port);
    log.info(
      {
        grpcPort: grpc.port,
        httpPort: http.port,
        storeId: db.storeId,
        revision: cache.revision.toString(),
        rules: cache.size,
        security: security.mode,
      },
      'control plane started',
    );

    let stopping: Promise<void> | undefined;
    return {
      id: config.controlPlaneId,
      grpcPort: grpc.port,
      httpPort: http.port,
      storeId: db.storeId,
      databaseUrl: db.url,
      security: security.mode,
      stop() {
        stopping ??= (async () => {
          log.info('control plane stopping');
          health.stop();
          grpc.setServing(false);
          listRefresher.stop();
          await Promise.all([sweeper.stop(), pruner.stop(), reaper.stop(), listScheduler.stop()]);
          for (const s of [...registry.all]) s.shutdown('SHUTTING_DOWN');
          for (const c of cleanup) {
            try {
              await c();
            } catch (err) {
              log.warn({ err }, 'shutdown step failed');
            }
          }
          log.info('control plane stopped');
        })();
        return stopping;
      },
    };
  } catch (e) {
    for (const c of cleanup) await c().catch(() => undefined);
    throw e;
  }
}
