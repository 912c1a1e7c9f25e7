// A heatmap on a canvas: plotters (in the worker) draws the grid as SVG; this paints it on a
// canvas and maps the pointer and the keyboard to cells. The SVG is loaded as an image, so
// nothing in it can run.

export class HeatmapView {
  /**
   * @param canvas   the <canvas> to draw on
   * @param worker   the WorkerClient
   * @param handlers { hover(cell | null), select(cell) }
   */
  constructor(canvas, worker, handlers = {}) {
    this.canvas = canvas;
    this.worker = worker;
    this.handlers = handlers;
    this.drawn = null;
    this.focus = null;
    canvas.addEventListener('mousemove', (e) => this.hover(this.cellAt(e)));
    canvas.addEventListener('mouseleave', () => this.hover(null));
    canvas.addEventListener('click', (e) => {
      const cell = this.cellAt(e);
      if (cell !== null) this.handlers.select?.(cell);
    });
    canvas.addEventListener('keydown', (e) => this.key(e));
    canvas.addEventListener('focus', () => {
      if (this.focus === null && this.drawn) this.hover(0);
    });
  }

  /** Draws `grid` (nested arrays) with `axes`, coloured on ±`limit`. */
  async show({ grid, axes, title, label, limit }) {
    await this.paint(await this.worker.call('render', { grid, axes, title, label, limit }));
  }

  /** Paints a heatmap the worker drew: `{svg, width, height, cells, grid, axes}`. */
  async paint(drawn) {
    this.drawn = { ...drawn, shape: drawn.axes.map((a) => a.labels.length) };
    this.focus = null;
    const image = await this.image(drawn.svg);
    // Drawn at twice the screen's resolution: the heatmap may be shown up to twice its natural
    // size (projectors), and the SVG stays sharp.
    const scale = 2 * (window.devicePixelRatio || 1);
    this.canvas.width = drawn.width * scale;
    this.canvas.height = drawn.height * scale;
    this.canvas.style.width = `min(100%, ${Math.round(drawn.width * 1.6)}px)`;
    this.canvas.style.aspectRatio = `${drawn.width} / ${drawn.height}`;
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.drawImage(image, 0, 0, drawn.width, drawn.height);
    this.base = ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
  }

  image(svg) {
    const url = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => {
        URL.revokeObjectURL(url);
        resolve(image);
      };
      image.onerror = () => reject(new Error('The heatmap could not be drawn.'));
      image.src = url;
    });
  }

  /** The flat index of the cell under a pointer event, or null. */
  cellAt(event) {
    if (!this.drawn) return null;
    const rect = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * this.drawn.width;
    const y = ((event.clientY - rect.top) / rect.height) * this.drawn.height;
    const found = this.drawn.cells.findIndex(([cx, cy, w, h]) => x >= cx && x < cx + w && y >= cy && y < cy + h);
    return found === -1 ? null : found;
  }

  /** The cell's value and its index along each axis. */
  describe(cell) {
    const index = [];
    let rest = cell;
    for (let a = this.drawn.shape.length - 1; a >= 0; a--) {
      index[a] = rest % this.drawn.shape[a];
      rest = Math.floor(rest / this.drawn.shape[a]);
    }
    let value = this.drawn.grid;
    for (const i of index) value = value[i];
    return { cell, index, value, labels: index.map((i, a) => this.drawn.axes[a].labels[i]) };
  }

  hover(cell) {
    this.focus = cell;
    this.outline(cell);
    this.handlers.hover?.(cell === null ? null : this.describe(cell));
  }

  /** Greys out cells (flat indices), under the outlines: their colour fades toward grey. */
  shade(cells) {
    if (!this.base || !cells.length) return;
    this.outline(null);
    const ctx = this.canvas.getContext('2d');
    ctx.fillStyle = 'rgba(200, 200, 200, 0.85)';
    for (const cell of cells) {
      const [x, y, w, h] = this.drawn.cells[cell];
      ctx.fillRect(x, y, w, h);
    }
    this.base = ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
  }

  /** Outlines cells in colours, under the focus outline: `[[cell, colour], ...]`. */
  marks(outlines) {
    if (!this.base) return;
    this.outline(null);
    const ctx = this.canvas.getContext('2d');
    ctx.lineWidth = 3;
    for (const [cell, color] of outlines) {
      const [x, y, w, h] = this.drawn.cells[cell];
      ctx.strokeStyle = color;
      ctx.strokeRect(x + 1.5, y + 1.5, w - 3, h - 3);
    }
    this.base = ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
  }

  outline(cell) {
    if (!this.base) return;
    const ctx = this.canvas.getContext('2d');
    ctx.putImageData(this.base, 0, 0);
    if (cell === null) return;
    const [x, y, w, h] = this.drawn.cells[cell];
    ctx.strokeStyle = '#111';
    ctx.lineWidth = 2;
    ctx.strokeRect(x + 1, y + 1, w - 2, h - 2);
  }

  /** Arrow keys move between cells in drawing order; Enter selects. */
  key(event) {
    if (!this.drawn) return;
    const cells = this.drawn.cells;
    const at = this.focus ?? 0;
    const [x, y] = cells[at];
    const pick = (filter, score) => {
      let best = null;
      let bestScore = Infinity;
      cells.forEach((c, i) => {
        if (i !== at && filter(c)) {
          const s = score(c);
          if (s < bestScore) {
            best = i;
            bestScore = s;
          }
        }
      });
      return best;
    };
    const near = (c) => Math.abs(c[0] - x) + Math.abs(c[1] - y);
    const moves = {
      ArrowRight: () => pick((c) => c[1] === y && c[0] > x, near),
      ArrowLeft: () => pick((c) => c[1] === y && c[0] < x, near),
      ArrowDown: () => pick((c) => c[0] === x && c[1] > y, near),
      ArrowUp: () => pick((c) => c[0] === x && c[1] < y, near),
    };
    if (moves[event.key]) {
      event.preventDefault();
      const next = moves[event.key]();
      if (next !== null) this.hover(next);
    } else if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      this.handlers.select?.(at);
    }
  }

  /** The drawn heatmap as a PNG blob. */
  png() {
    this.outline(null);
    return new Promise((resolve) => this.canvas.toBlob(resolve, 'image/png'));
  }

  /** The drawn heatmap as SVG text. */
  svg() {
    return this.drawn?.svg ?? '';
  }
}
