import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import FindMyWay from 'find-my-way';
import type { Clock } from '../core/clock.js';
import { syError, type SwitchyardError } from '../core/errors.js';
import { events, publish } from '../core/events.js';
import { requestId } from '../core/ids.js';
import { RequestContext, type ErrorStyle } from './context.js';
import { refuseBody } from './body.js';
import { liveRequests, probeAfterFin, whenConnectionIdle } from './connection.js';
import { rawErrorResponse, sendError } from './respond.js';
import { chatCompletions, embeddings, listModels, retrieveModel } from './routes/openai.js';
import { runJourney } from './routes/journeys.js';
import * as responses from './routes/responses.js';
import { countMessageTokens, createMessage } from './routes/anthropic.js';
import { modelInfer, modelMetadata, modelReady, serverMetadata } from './routes/kserve.js';
import { live, metrics, readiness, type OpenMetricsRender } from './routes/ops.js';
import {
  deleteVectors,
  listCollections,
  searchVectors,
  shardOperation,
  splitVectorShard,
  upsertVectors,
  vectorStats,
} from './routes/vectors.js';
import { getMode, putMode } from './routes/admin-mode.js';
import { listAudit } from './routes/admin-audit.js';
import { getRequest, listRequests } from './routes/admin-requests.js';
import { replayRequests } from './routes/admin-replay.js';
import { listCosts } from './routes/admin-costs.js';
import * as rel from './routes/admin-release.js';
import { getConsent, putConsent, revokeConsent } from './routes/consent.js';
import { listFeatureDefinitions, pushFeatures, readFeatures } from './routes/features.js';
import type { GatewayState } from './runtime.js';

type Handler = (ctx: RequestContext) => Promise<void>;

interface RouteMeta {
  readonly pattern: string;
  readonly style: ErrorStyle;
  /** Whether the route needs an API key (health and metrics never do). */
  readonly auth: boolean;
  readonly handler: Handler;
}

export interface FrontDoorOptions {
  readonly state: GatewayState;
  readonly clock: Clock;
  readonly renderMetrics: () => Promise<string>;
  readonly metricsContentType: string;
  /** OpenMetrics with trace-id exemplars, for scrapers that ask for it (#15). */
  readonly openMetrics?: OpenMetricsRender;
}

export interface RouteEntry {
  readonly method: string;
  readonly pattern: string;
  readonly auth: boolean;
}

export interface FrontDoor {
  readonly server: Server;
  /** Every route: its method and pattern (find-my-way syntax, `:name` for a parameter). */
  routes(): readonly RouteEntry[];
  /** Requests being served now. */
  inFlight(): number;
  /** Stops accepting, lets in-flight requests finish for up to `drainMs`, then closes the rest. */
  close(drainMs: number): Promise<void>;
}

/**
 * The HTTP server: limits, routing, auth and the error mapper. Node's own parser errors
 * (bad syntax, oversized headers, slow clients) get the same JSON error bodies through the
 * `clientError` handler.
 */
export function createFrontDoor(opts: FrontDoorOptions): FrontDoor {
  const { state, clock } = opts;
  const router = FindMyWay({ ignoreTrailingSlash: true, caseSensitive: true, maxParamLength: 256 });
  const routes: RouteEntry[] = [];
  const add = (
    methods: string[],
    pattern: string,
    style: ErrorStyle,
    auth: boolean,
    handler: Handler,
  ): void => {
    for (const m of methods) routes.push({ method: m, pattern, auth });
    for (const m of methods)
      router.on(m as 'GET', pattern, () => undefined, {
        pattern,
        style,
        auth,
        handler,
      } satisfies RouteMeta);
  };
  const GET = ['GET', 'HEAD'];
  const POST = ['POST'];
  add(POST, '/v1/chat/completions', 'openai', true, chatCompletions);
  add(POST, '/v1/journeys/:name', 'openai', true, runJourney);
  add(POST, '/v1/embeddings', 'openai', true, embeddings);
  // The Responses API and stored responses (#16).
  add(POST, '/v1/responses', 'openai', true, responses.createResponse);
  add(GET, '/v1/responses/:id', 'openai', true, responses.retrieveResponse);
  add(['DELETE'], '/v1/responses/:id', 'openai', true, responses.deleteResponse);
  add(GET, '/v1/responses/:id/input_items', 'openai', true, responses.listInputItems);
  add(GET, '/v1/models', 'openai', true, listModels);
  add(GET, '/v1/models/:model', 'openai', true, retrieveModel);
  // Anthropic Messages (#16): errors in Anthropic's shape; `x-api-key` authenticates as Bearer does.
  add(POST, '/v1/messages', 'anthropic', true, createMessage);
  add(POST, '/v1/messages/count_tokens', 'anthropic', true, countMessageTokens);
  // Feature store and consent (#7).
  add(POST, '/v1/features', 'openai', true, pushFeatures);
  add(GET, '/v1/features/:entity', 'openai', true, readFeatures);
  add(GET, '/v1/feature-definitions', 'openai', true, listFeatureDefinitions);
  add(GET, '/v1/consent/:user', 'openai', true, getConsent);
  add(['PUT'], '/v1/consent/:user', 'openai', true, putConsent);
  add(POST, '/v1/consent/:user/revoke', 'openai', true, revokeConsent);
  add(GET, '/v2', 'kserve', false, serverMetadata);
  add(GET, '/v2/health/live', 'kserve', false, live);
  add(GET, '/v2/health/ready', 'kserve', false, readiness(state));
  for (const base of ['/v2/models/:name', '/v2/models/:name/versions/:version']) {
    add(GET, base, 'kserve', true, modelMetadata);
    add(GET, `${base}/ready`, 'kserve', true, modelReady);
    add(POST, `${base}/infer`, 'kserve', true, modelInfer);
  }
  // Vector collections and the node-to-node shard API (#7).
  add(GET, '/v1/vectors', 'openai', true, listCollections);
  add(POST, '/v1/vectors/:collection/upsert', 'openai', true, upsertVectors);
  add(POST, '/v1/vectors/:collection/search', 'openai', true, searchVectors);
  add(POST, '/v1/vectors/:collection/delete', 'openai', true, deleteVectors);
  add(GET, '/v1/vectors/:collection/stats', 'openai', true, vectorStats);
  add(POST, '/admin/vectors/:collection/shards/:shard/split', 'openai', true, splitVectorShard);
  add(POST, '/v1/vector-shards/:shard/:op', 'openai', true, shardOperation);
  add(GET, '/healthz', 'openai', false, live);
  add(GET, '/readyz', 'openai', false, readiness(state));
  add(
    GET,
    '/metrics',
    'openai',
    false,
    metrics(opts.renderMetrics, opts.metricsContentType, opts.openMetrics),
  );
  // Admission control's mode API (#5), admin keys only. Health and metrics routes never pass
  // admission, so they are never shed.
  add(GET, '/admin/mode', 'openai', true, getMode);
  add(['PUT'], '/admin/mode', 'openai', true, putMode);
  add(GET, '/admin/audit', 'openai', true, listAudit);
  add(GET, '/admin/requests', 'openai', true, listRequests);
  add(GET, '/admin/requests/:id', 'openai', true, getRequest);
  add(POST, '/admin/replay', 'openai', true, replayRequests);
  add(GET, '/admin/costs', 'openai', true, listCosts);
  // Release management (#6): registry, experiments, stats, audit; feedback for rewards.
  add(GET, '/admin/models', 'openai', true, rel.listRegistry);
  add(
    POST,
    '/admin/models/:model/versions/:version/signature',
    'openai',
    true,
    rel.attachSignature,
  );
  add(POST, '/admin/models/:model/versions/:version/promote', 'openai', true, rel.promoteVersion);
  add(POST, '/admin/models/:model/versions/:version/retire', 'openai', true, rel.retireVersion);
  add(GET, '/admin/experiments', 'openai', true, rel.listExperiments);
  add(POST, '/admin/experiments', 'openai', true, rel.createExperiment);
  add(GET, '/admin/experiments/:id', 'openai', true, rel.getExperiment);
  add(['DELETE'], '/admin/experiments/:id', 'openai', true, rel.deleteExperiment);
  add(POST, '/admin/experiments/:id/status', 'openai', true, rel.setExperimentStatus);
  add(GET, '/admin/experiments/:id/stats', 'openai', true, rel.experimentStats);
  add(GET, '/admin/release/audit', 'openai', true, rel.releaseAudit);
  add(GET, '/admin/exposures', 'openai', true, rel.listExposures);
  add(POST, '/v1/feedback', 'openai', true, rel.postFeedback);

  let inFlight = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // A client that resets mid-body makes the request emit 'error'; it is handled by the close.
    req.on('error', () => undefined);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let path = q < 0 ? url : url.slice(0, q);
    if (!path.startsWith('/')) path = safePathOfAbsolute(path);
    let found: FindMyWay.FindResult<FindMyWay.HTTPVersion.V1> | null = null;
    try {
      found = router.find((req.method ?? 'GET') as 'GET', path);
    } catch {
      found = null;
    }
    const meta = found?.store as RouteMeta | undefined;
    const style: ErrorStyle = meta?.style ?? (path.startsWith('/v2') ? 'kserve' : 'openai');
    const ctx = new RequestContext(
      req,
      res,
      meta?.pattern ?? 'unmatched',
      style,
      found?.params ?? {},
      state.runtime(),
      clock,
    );
    inFlight++;
    ctx.onEnd(() => inFlight--);
    try {
      if (meta === undefined) throw notFound(router, req.method ?? '', path);
      if (meta.auth) ctx.principal = ctx.runtime.keys.authenticate(req.headers);
      await meta.handler(ctx);
    } catch (err) {
      sendError(ctx, err);
    }
  };

  const limits = state.runtime().snapshot.config.server.limits;
  const server = createServer(
    {
      maxHeaderSize: limits.header_bytes,
      headersTimeout: limits.headers_timeout_ms,
      requestTimeout: limits.request_timeout_ms,
      keepAliveTimeout: limits.keep_alive_timeout_ms,
      // Node checks the two timeouts above only this often (30 s by default).
      connectionsCheckingInterval: limits.timeout_check_interval_ms,
      // A missing Host header is answered by our handler, with a JSON body, not by Node.
      requireHostHeader: false,
    },
    (req, res) => void handle(req, res),
  );
  server.maxConnections = limits.max_connections;
  // A client may half-close (shutdown(SHUT_WR)) once its request is sent and still read the
  // answer. With Node's default (false) the server ends its side of the socket as soon as the
  // client's FIN arrives, so answers still being made are never written (#13). With true Node
  // marks the last pending response and closes the connection right after writing it. A FIN
  // alone no longer ends a request, then: whether the client is gone is learnt by writing to
  // it (probeAfterFin).
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  server.on('connection', (socket: Socket) => {
    socket.once('end', () => probeAfterFin(socket));
  });
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => void handle(req, res));
  // Any other Expect value: RFC 9110 §10.1.1 allows serving the request as if it were absent
  // (Node would otherwise answer an empty 417).
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res);
  });
  // Without a listener Node drops a CONNECT request's socket without a word.
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    answerRaw(socket, syError('SY_ERR_METHOD_NOT_ALLOWED', 'CONNECT'));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    onClientError(err, socket);
  });

  return {
    server,
    routes: () => routes,
    inFlight: () => inFlight,
    close: (drainMs) => closeGracefully(server, () => inFlight, drainMs),
  };
}

function notFound(
  router: FindMyWay.Instance<FindMyWay.HTTPVersion.V1>,
  method: string,
  path: string,
): SwitchyardError {
  for (const other of ['GET', 'POST']) {
    if (other !== method && router.find(other as 'GET', path) !== null) {
      return syError('SY_ERR_METHOD_NOT_ALLOWED', `${method.slice(0, 20)} ${path.slice(0, 200)}`);
    }
  }
  return syError('SY_ERR_ROUTE_NOT_FOUND', `${method.slice(0, 20)} ${path.slice(0, 200)}`);
}

/** `GET http://host/path` (absolute form) → `/path`; anything else becomes an unmatched path. */
function safePathOfAbsolute(target: string): string {
  try {
    return new URL(target).pathname;
  } catch {
    return '/\u0000invalid';
  }
}

/** Connections whose bytes Node's parser refused: answered once, then closed. */
const refused = new WeakSet<Socket>();

/**
 * Node's parser refused bytes on a connection, or a client sent too slowly: answer in JSON,
 * keep the order of pipelined answers (RFC 9112 §9.3.2), then close. A request still arriving
 * when its bytes went wrong (a broken chunked body, a body too slow) is ended with the error and
 * its own handler answers it in its place; bytes after the last whole request are answered once
 * every answer before them is out.
 */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable) {
    socket.destroy();
    return;
  }
  if (refused.has(socket)) return;
  refused.add(socket);
  let e: SwitchyardError;
  if (err.code === 'HPE_HEADER_OVERFLOW') e = syError('SY_ERR_HEADERS_TOO_LARGE');
  else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'HPE_HEADERS_TIMEOUT') {
    e = syError('SY_ERR_REQUEST_TIMEOUT', 'the client sent too slowly');
  } else e = syError('SY_ERR_MALFORMED_HTTP', err.code ?? 'parse error');
  const arriving = liveRequests(socket).find((c) => !c.req.complete);
  if (arriving !== undefined) {
    refuseBody(arriving.req, e);
    return;
  }
  whenConnectionIdle(socket, () => {
    if (socket.writable) answerRaw(socket, e);
    else socket.destroy();
  });
}

/** Writes a JSON error straight to the socket and closes it (no request object exists). */
function answerRaw(socket: Socket, e: SwitchyardError): void {
  const id = requestId();
  socket.end(rawErrorResponse(e, id));
  publish(events.requestDone, {
    requestId: id,
    method: '',
    route: 'client_error',
    model: '',
    tenant: '',
    keyFingerprint: '',
    trafficClass: '',
    status: e.status,
    code: e.code,
    durationMs: 0,
    stream: false,
    path: '',
  });
}

async function closeGracefully(
  server: Server,
  inFlight: () => number,
  drainMs: number,
): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const until = Date.now() + drainMs;
  while (inFlight() > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    server.closeIdleConnections();
  }
  server.closeAllConnections();
  await closed;
}
