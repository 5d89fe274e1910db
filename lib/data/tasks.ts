/**
 * The fine-tuning tasks the project knows: their labels, metric, reader and where their files are expected.
 * `getTask("sst2")` gives the spec; `resolveTaskData("sst2")` finds its train/dev files (in `data/glue/SST-2/`,
 * then in `../shared/data/glue/SST-2/`) or explains which file is missing and how to fetch it.
 * @module
 */
import {
  COLA_LABELS,
  type Dataset,
  MRPC_LABELS,
  readGlueCola,
  readGlueMrpc,
  readGlueSst2,
  type ReadOptions,
  readYelpPolarity,
  SST2_LABELS,
  YELP_LABELS,
} from "./datasets.ts";
import { exists, join, projectRoot, relativeToCwd } from "../io/fsutil.ts";

/** How a task is scored. `accuracy_f1` reports accuracy and F1 of the positive class (MRPC). */
export type TaskMetric = "accuracy" | "mcc" | "accuracy_f1";

/** Everything the pipeline needs to know about one task. */
export interface TaskSpec {
  /** Registry key: `sst2`, `cola`, `mrpc`, `yelp`, `sample`. */
  name: string;
  /** One line for `--help` and notebooks. */
  description: string;
  /** Label names; a label id is an index into them. */
  labels: string[];
  /** Sentence-pair task (textA + textB). */
  pair: boolean;
  metric: TaskMetric;
  /** Reads one of the task's files. */
  read(path: string, opts?: ReadOptions): Promise<Dataset>;
  /** File names inside the task's data folder. */
  files: { train: string; dev: string; test?: string };
  /**
   * Where the data folder is expected, relative to the project root: `user` is where data/README.md tells users
   * to put it, `shared` the read-only copy on the project's test machine (if there is one).
   */
  dataDirHint: { user: string; shared?: string };
  /** Smaller real subsets to fall back on when the full files are absent (e.g. 200 Yelp rows in ../shared). */
  subsetFiles?: { train: string; dev: string };
  /** The data/README.md section that explains how to fetch the data. */
  readmeSection: string;
}

const GLUE_SECTION = "GLUE: SST-2, CoLA and MRPC";

/** The task registry. */
export const TASKS: Record<string, TaskSpec> = {
  sample: {
    name: "sample",
    description: "the embedded default: 500 short review sentences written for this project (SST-2 layout)",
    labels: [...SST2_LABELS],
    pair: false,
    metric: "accuracy",
    read: readGlueSst2,
    files: { train: "train.tsv", dev: "dev.tsv" },
    dataDirHint: { user: "data/sample" },
    readmeSection: "data/sample: the embedded default",
  },
  sst2: {
    name: "sst2",
    description: "GLUE SST-2: movie-review sentence sentiment (67,349 train / 872 dev)",
    labels: [...SST2_LABELS],
    pair: false,
    metric: "accuracy",
    read: readGlueSst2,
    files: { train: "train.tsv", dev: "dev.tsv", test: "test.tsv" },
    dataDirHint: { user: "data/glue/SST-2", shared: "../shared/data/glue/SST-2" },
    readmeSection: GLUE_SECTION,
  },
  cola: {
    name: "cola",
    description: "GLUE CoLA: grammatical acceptability (8,551 train / 1,043 dev), scored by Matthews correlation",
    labels: [...COLA_LABELS],
    pair: false,
    metric: "mcc",
    read: readGlueCola,
    files: { train: "train.tsv", dev: "dev.tsv", test: "test.tsv" },
    dataDirHint: { user: "data/glue/CoLA", shared: "../shared/data/glue/CoLA" },
    readmeSection: GLUE_SECTION,
  },
  mrpc: {
    name: "mrpc",
    description: "GLUE MRPC: paraphrase sentence pairs (3,668 train / 408 dev), scored by accuracy and F1",
    labels: [...MRPC_LABELS],
    pair: true,
    metric: "accuracy_f1",
    read: readGlueMrpc,
    files: { train: "train.tsv", dev: "dev.tsv", test: "test.tsv" },
    dataDirHint: { user: "data/glue/MRPC", shared: "../shared/data/glue/MRPC" },
    readmeSection: GLUE_SECTION,
  },
  yelp: {
    name: "yelp",
    description: "Yelp review polarity: long reviews (560,000 train / 38,000 test; test.csv serves as dev)",
    labels: [...YELP_LABELS],
    pair: false,
    metric: "accuracy",
    read: readYelpPolarity,
    files: { train: "train.csv", dev: "test.csv" },
    dataDirHint: { user: "data/yelp_review_polarity_csv", shared: "../shared/data/yelp-polarity" },
    subsetFiles: { train: "head200_train.csv", dev: "head20_test.csv" },
    readmeSection: "Yelp review polarity",
  },
};

/** The spec of task `name`; throws an error listing the valid names for an unknown one. */
export function getTask(name: string): TaskSpec {
  const task = Object.hasOwn(TASKS, name) ? TASKS[name] : undefined;
  if (!task) throw new Error(`unknown task "${name}": valid tasks are ${Object.keys(TASKS).join(", ")}`);
  return task;
}

/** Where a task's files were found. */
export interface TaskData {
  task: string;
  /** The data folder that was used. */
  dir: string;
  train: string;
  dev: string;
  test?: string;
  /** True when only the smaller subset files were found (see {@linkcode TaskSpec.subsetFiles}). */
  subset: boolean;
}

/**
 * Finds the train/dev (and test) files of `task`. With `dataDir`, only that folder is searched; otherwise the
 * user folder (`data/glue/SST-2`, ...) and then the shared copy (`../shared/data/...`), both relative to the
 * project root. When a folder lacks the full files but has the task's subset files, those are used (`subset:
 * true`). Throws an error naming the missing file and the data/README.md section that explains how to fetch it.
 */
export async function resolveTaskData(task: string | TaskSpec, dataDir?: string): Promise<TaskData> {
  const spec = typeof task === "string" ? getTask(task) : task;
  const root = projectRoot();
  const dirs = dataDir !== undefined
    ? [dataDir]
    : [spec.dataDirHint.user, spec.dataDirHint.shared].filter((d): d is string => d !== undefined)
      .map((d) => relativeToCwd(join(root, d)));
  let firstMissing: string | undefined;
  for (const dir of dirs) {
    const train = join(dir, spec.files.train);
    const dev = join(dir, spec.files.dev);
    if (await exists(train) && await exists(dev)) {
      const test = spec.files.test ? join(dir, spec.files.test) : undefined;
      return { task: spec.name, dir, train, dev, test: test && await exists(test) ? test : undefined, subset: false };
    }
    firstMissing ??= await exists(train) ? dev : train;
    if (spec.subsetFiles) {
      const subTrain = join(dir, spec.subsetFiles.train);
      const subDev = join(dir, spec.subsetFiles.dev);
      if (await exists(subTrain) && await exists(subDev)) {
        return { task: spec.name, dir, train: subTrain, dev: subDev, subset: true };
      }
    }
  }
  const looked = dirs.length > 1 ? ` (also looked in ${dirs.slice(1).join(", ")})` : "";
  throw new Error(
    `task "${spec.name}": missing ${firstMissing}${looked}. See data/README.md, section "${spec.readmeSection}", ` +
      `for how to fetch it${dataDir === undefined ? ", or point to the folder that holds it" : ""}.`,
  );
}
