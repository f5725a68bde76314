/** Listeners of one kind of event: one length check per event when there are none. */
export class Listeners<T> {
  private list: readonly ((event: T) => void)[] = [];

  constructor(private readonly onListenerError: (err: unknown) => void) {}

  get listening(): boolean {
    return this.list.length !== 0;
  }

  /** Subscribes; returns the disposer. */
  on(listener: (event: T) => void): () => void {
    if (typeof listener !== 'function') {
      throw new TypeError(`Turnpike: a listener must be a function, got ${typeof listener}`);
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

  /** Calls every listener; one that throws is reported and the others still run. */
  emit(event: T): void {
    for (const listener of this.list) {
      try {
        listener(event);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }
}
