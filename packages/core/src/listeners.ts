/**
 * Listeners of one kind of event: costs one length check per event when there are none. A
 * listener that throws is reported to `onListenerError` and the others still run. `method`
 * names the subscribing method in the TypeError for a listener that is not a function.
 */
export class Listeners<T> {
  private list: readonly ((event: T) => void)[] = [];

  constructor(
    private readonly onListenerError: (err: unknown) => void,
    private readonly method = 'on',
  ) {}

  get listening(): boolean {
    return this.list.length !== 0;
  }

  /** Subscribes; returns the disposer. */
  on(listener: (event: T) => void): () => void {
    if (typeof listener !== 'function') {
      throw new TypeError(`Turnpike: ${this.method}() takes a function, got ${typeof listener}`);
    }
    this.list = [...this.list, listener];
    let disposed = false;
    return () => {
      if (disposed) return;
      disposed = true;
      const i = this.list.indexOf(listener);
      if (i !== -1) this.list = [...this.list.slice(0, i), ...this.list.slice(i + 1)];
    };
  }

  emit(event: T): void {
    // A copy-on-write list: a listener that subscribes or disposes during emit is safe.
    for (const listener of this.list) {
      try {
        listener(event);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }
}
