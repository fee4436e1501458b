/**
 * SQL highlighting for lunepool_magic's `%%sql` cells.
 *
 * A code cell of a Python notebook whose source starts with `%%sql` (or
 * `%%lunesql`, or JupySQL's `%%jupysql`) gets the PostgreSQL language JupyterLab already registers
 * (mime type text/x-pgsql); when it stops starting so, it gets the notebook's
 * own language back. Nothing else is touched: Markdown and raw cells, other
 * kernels' notebooks, other editors, and cells another extension switched.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICellModel } from '@jupyterlab/cells';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

const SQL_MIME = 'text/x-pgsql';
const PYTHON_MIMES = new Set(['text/x-ipython', 'text/x-python']);
// IPython drops leading blank lines before it looks for a cell magic.
const CELL_MAGIC = /^(?:[ \t]*\r?\n)*%%(?:sql|lunesql|jupysql)(?:\s|$)/;

function follow(panel: NotebookPanel): void {
  const notebook = panel.content;
  const followed = new WeakSet<ICellModel>();

  const apply = (cell: ICellModel): void => {
    const own = notebook.codeMimetype;
    if (cell.type !== 'code' || !PYTHON_MIMES.has(own)) {
      return;
    }
    if (CELL_MAGIC.test(cell.sharedModel.getSource())) {
      if (cell.mimeType !== SQL_MIME) {
        cell.mimeType = SQL_MIME;
      }
    } else if (cell.mimeType === SQL_MIME) {
      cell.mimeType = own;
    }
  };
  const watch = (cell: ICellModel): void => {
    if (!followed.has(cell)) {
      followed.add(cell);
      cell.contentChanged.connect(() => apply(cell));
    }
    apply(cell);
  };
  const applyAll = (): void => {
    const cells = notebook.model?.cells;
    if (cells) {
      for (let i = 0; i < cells.length; i++) {
        watch(cells.get(i));
      }
    }
  };
  const connect = (): void => {
    const model = notebook.model;
    if (!model) {
      return;
    }
    model.cells.changed.connect(applyAll);
    // The notebook resets every code cell's language when the kernel's
    // language_info arrives or changes; this runs after it and switches back.
    model.metadataChanged.connect(applyAll);
    applyAll();
  };
  notebook.modelChanged.connect(connect);
  void panel.context.ready.then(connect);
  panel.sessionContext.kernelChanged.connect(applyAll);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'lunepool-magic-highlight:plugin',
  description: 'Highlights %%sql cells as PostgreSQL SQL.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker): void => {
    tracker.forEach(follow);
    tracker.widgetAdded.connect((_sender, panel) => follow(panel));
  }
};

export default plugin;
