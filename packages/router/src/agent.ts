import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { CONNECT_TIMEOUT } from './upstream-errors';

function onConnectTimeout(socket: Socket): void {
  const err = Object.assign(new Error('connect timeout'), { code: CONNECT_TIMEOUT });
  socket.destroy(err);
}

/** Destroys a socket that is still connecting after `ms`. */
function armConnectTimeout(socket: Duplex, ms: number): void {
  const s = socket as Socket;
  if (!s.connecting) return;
  const timer = setTimeout(onConnectTimeout, ms, s);
  timer.unref();
  const clear = () => clearTimeout(timer);
  s.once('connect', clear);
  s.once('close', clear);
}

/** Keep-alive limits of one service's agents. */
export interface AgentLimits {
  maxSockets: number;
  maxFreeSockets: number;
  freeSocketTimeoutMs: number;
  connectTimeoutMs: number;
}

type CreateConnection = (options: unknown, cb?: unknown) => Duplex;

function withConnectTimeout<A extends http.Agent>(agent: A, ms: number): A {
  const base = (agent as unknown as { createConnection: CreateConnection }).createConnection;
  (agent as unknown as { createConnection: CreateConnection }).createConnection = function (
    options,
    cb,
  ) {
    const socket = base.call(this, options, cb);
    armConnectTimeout(socket, ms);
    return socket;
  };
  return agent;
}

/** One keep-alive agent per protocol for a service, with a connect timeout on new sockets. */
export function createAgents(limits: AgentLimits): { 'http:': http.Agent; 'https:': https.Agent } {
  const options = {
    keepAlive: true,
    maxSockets: limits.maxSockets,
    maxFreeSockets: limits.maxFreeSockets,
    timeout: limits.freeSocketTimeoutMs,
    scheduling: 'lifo' as const,
  };
  return {
    'http:': withConnectTimeout(new http.Agent(options), limits.connectTimeoutMs),
    'https:': withConnectTimeout(new https.Agent(options), limits.connectTimeoutMs),
  };
}
