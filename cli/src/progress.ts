// A one-line progress bar on a terminal; silent otherwise.
export class Progress {
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly enabled: boolean,
    private readonly total: number,
  ) {}

  update(done: number, label: string): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const width = 30;
    let bar = '';
    if (this.total > 0) {
      const frac = Math.min(1, done / this.total);
      const full = Math.round(frac * width);
      bar = `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}% `;
    }
    this.stream.write(`\r\x1b[2K${bar}${label}`);
    this.drawn = true;
  }

  finish(): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
  }
}
