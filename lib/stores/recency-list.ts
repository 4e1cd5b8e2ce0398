/** What a RecencyList holds: anything with its own prev/next links. */
export interface Linked<T> {
  prev: T | undefined;
  next: T | undefined;
}

/**
 * A doubly linked list in recency order, oldest first. Map iteration order
 * would give the same order for free, but taking the oldest key of a V8 Map
 * walks over every slot deleted before it, which made eviction O(maxKeys).
 */
export class RecencyList<Entry extends Linked<Entry>> {
  private head: Entry | undefined;
  private tail: Entry | undefined;

  push(entry: Entry): void {
    entry.prev = this.tail;
    entry.next = undefined;
    if (this.tail) this.tail.next = entry;
    else this.head = entry;
    this.tail = entry;
  }

  remove(entry: Entry): void {
    if (entry.prev) entry.prev.next = entry.next;
    else if (this.head === entry) this.head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else if (this.tail === entry) this.tail = entry.prev;
    entry.prev = entry.next = undefined;
  }

  oldest(): Entry | undefined {
    return this.head;
  }

  clear(): void {
    this.head = this.tail = undefined;
  }
}
