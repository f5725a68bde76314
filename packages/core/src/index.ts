/** The error family: every request-time failure is a GatewayError with a code and a status. */
export { GatewayError, isGatewayError } from './errors';
export type { GatewayErrorCode, GatewayErrorOptions } from './errors';
/** One writer for every error response: application/problem+json (RFC 9457). */
export { sendProblem, toProblem, PROBLEM_CONTENT_TYPE } from './problem';
export type { ProblemBody } from './problem';
/** Listeners of one kind of event (outcomes, state changes). */
export { Listeners } from './listeners';
/** Types shared between packages. */
export { isFailedEnd, silentLogger } from './types';
export type {
  AttemptEnd,
  AttemptReport,
  KeyValueStore,
  Logger,
  RequestWithId,
  TargetPicker,
} from './types';
/** Options validation: checks that name the field path, the value and what was expected. */
export {
  ConfigError,
  isConfigError,
  describe,
  object,
  record,
  array,
  string,
  number,
  boolean,
  fn,
  oneOf,
  either,
  deepFreeze,
  join,
  logger,
  redisConnection,
} from './validate';
export type { Check, Shape } from './validate';
/** Upstream targets: a URL (and weight) parsed once into the object the proxy takes. */
export { parseTarget } from './target';
export type { Target, TargetInput } from './target';
