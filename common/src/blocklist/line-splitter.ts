// Text chunks (any boundaries, e.g. from a stream) to lines: "\n" or "\r\n"
// ends a line. A line longer than the limit is never held whole: its first
// characters are kept for the report and the rest only counted, so memory
// stays bounded whatever the input. Pure.

export interface RawLine {
  /** The line without its end of line; for a too-long line, only its start. */
  readonly text: string;
  /** Its length in UTF-16 code units. */
  readonly length: number;
  readonly tooLong: boolean;
}

/** How much of a too-long line is kept for the report. */
export const KEPT_OF_LONG_LINE = 200;

export class LineSplitter {
  private pending = '';
  private pendingLength = 0;
  private overflow = false;

  constructor(private readonly maxLength: number) {}

  push(chunk: string, onLine: (line: RawLine) => void): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      this.append(nl < 0 ? chunk.slice(start) : chunk.slice(start, nl));
      if (nl < 0) return;
      this.emit(onLine);
      start = nl + 1;
    }
  }

  /** Emits the last line if the input did not end with a newline. */
  end(onLine: (line: RawLine) => void): void {
    if (this.pendingLength > 0) this.emit(onLine);
  }

  private append(piece: string): void {
    if (piece.length === 0) return;
    this.pendingLength += piece.length;
    if (this.overflow) return;
    // +1: a line of exactly maxLength may still carry the "\r" of "\r\n".
    if (this.pendingLength > this.maxLength + 1) {
      this.overflow = true;
      this.pending = (this.pending + piece.slice(0, KEPT_OF_LONG_LINE)).slice(0, KEPT_OF_LONG_LINE);
      return;
    }
    this.pending += piece;
  }

  private emit(onLine: (line: RawLine) => void): void {
    let text = this.pending;
    let length = this.pendingLength;
    if (!this.overflow && text.endsWith('\r')) {
      text = text.slice(0, -1);
      length--;
    }
    onLine({ text, length, tooLong: length > this.maxLength });
    this.pending = '';
    this.pendingLength = 0;
    this.overflow = false;
  }
}
