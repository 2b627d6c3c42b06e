import { seededRandom } from '../core/random.js';
import type { Random } from '../core/random.js';

/**
 * Seeded synthetic data for the demo super app: support/commerce intents, fine-grained product
 * question topics, and users × items with a hidden click probability. Each generator returns a
 * train split and a held-out split with no text (or user–item pair) in both.
 */
export interface TextExample {
  readonly text: string;
  readonly label: number;
  /** Made by joining requests of two intents; its label is one of the two, at random. */
  readonly ambiguous: boolean;
}

export interface TextDataset {
  readonly labels: readonly string[];
  readonly train: readonly TextExample[];
  readonly heldout: readonly TextExample[];
}

const pick = <T>(rng: Random, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

const SLOTS: Readonly<Record<string, readonly string[]>> = {
  item: [
    'headphones',
    'running shoes',
    'phone case',
    'rice cooker',
    'yoga mat',
    'smart watch',
    'backpack',
    'coffee beans',
    'desk lamp',
    'blender',
    'sunglasses',
    'charger',
    't-shirt',
    'gaming mouse',
    'water bottle',
    'winter jacket',
  ],
  order: ['order', 'package', 'parcel', 'purchase', 'stuff'],
  when: [
    'yesterday',
    'last week',
    'on monday',
    '3 days ago',
    'two weeks ago',
    'this morning',
    'friday',
  ],
  method: [
    'credit card',
    'debit card',
    'wallet',
    'upi',
    'paypal',
    'bank transfer',
    'apple pay',
    'visa card',
  ],
};

function slotValue(rng: Random, slot: string): string {
  if (slot === 'id') return `#${10000 + Math.floor(rng() * 90000)}`;
  if (slot === 'amount') {
    const n = 5 + Math.floor(rng() * 495);
    return pick(rng, [`$${n}`, `${n} dollars`, `rs ${n * 10}`, `${n}.99`]);
  }
  const values = SLOTS[slot];
  if (values === undefined) throw new Error(`unknown slot {${slot}}`);
  return pick(rng, values);
}

function fill(rng: Random, template: string): string {
  return template.replace(/\{(\w+)\}/g, (_, slot: string) => slotValue(rng, slot));
}

export const INTENTS = [
  'order_status',
  'refund_request',
  'payment_problem',
  'delivery_delay',
  'account_access',
  'product_question',
  'fraud_report',
  'chitchat',
] as const;

const INTENT_TEMPLATES: Readonly<Record<(typeof INTENTS)[number], readonly string[]>> = {
  order_status: [
    'where is my {order}',
    'can you tell me the status of {order} {id}',
    'has my {item} shipped yet',
    'track my {order}',
    'i want to check on the {order} i placed {when}',
    'what is the status of my {item} {order}',
    'is my {order} {id} on the way',
    'how do i track the {item} i bought',
    'any update on my {order}',
    'did my {order} ship already',
    'order {id} status',
    'when will my {item} be dispatched',
  ],
  refund_request: [
    'i want a refund for my {item}',
    'how do i return the {item} i bought {when}',
    'please refund {order} {id}',
    'can i get my money back for the {item}',
    'the {item} arrived broken, i want a refund',
    'i would like to return this {item} and get a refund',
    'when will i receive my refund of {amount}',
    'start a return for {order} {id}',
    'the {item} does not fit, can i send it back',
    'refund status for my returned {item}',
    'cancel my {order} and give me my money back',
    'return policy for {item}, i want to send it back',
  ],
  payment_problem: [
    'my payment failed',
    'my {method} was declined',
    'i was charged twice for {order} {id}',
    'payment did not go through with {method}',
    'why was i charged {amount} twice',
    'checkout keeps failing when i pay with {method}',
    'money was deducted but the {order} shows unpaid',
    'cannot pay with my {method}',
    'transaction error while paying for the {item}',
    'the app says payment pending for {amount}',
    'double charge on my {method} {when}',
    'payment stuck at processing',
  ],
  delivery_delay: [
    'my {order} is late',
    'the {item} was supposed to arrive {when} but it has not',
    'why is my delivery delayed',
    '{order} {id} still not delivered',
    'the courier missed the delivery window',
    'it has been two weeks and still no {item}',
    'expected delivery date passed for my {order}',
    'delivery is taking forever',
    'tracking has not moved since {when}',
    'the driver never showed up with my {order}',
    'my {item} is stuck in transit',
    'why is shipping so slow for my {order}',
  ],
  account_access: [
    'i can not log in to my account',
    'forgot my password',
    'reset my password please',
    'my account is locked',
    'i am not getting the otp code',
    'how do i change the email on my account',
    'the verification code never arrives',
    'login keeps failing after the update',
    'i got logged out and can not get back in',
    'two factor authentication is not working',
    'sign in says wrong password but it is right',
    'how to recover my account without my old phone',
  ],
  product_question: [
    'is the {item} waterproof',
    'what size should i get for the {item}',
    'does the {item} come with a warranty',
    'is the {item} available in blue',
    'how long does the battery of the {item} last',
    'what material is the {item} made of',
    'is the {item} compatible with iphone',
    'can you compare the two {item} models',
    'is the {item} in stock',
    'what are the dimensions of the {item}',
    'does the {item} work in cold weather',
    'which {item} is best for beginners',
  ],
  fraud_report: [
    'someone used my {method} without permission',
    'i see a charge of {amount} i did not make',
    'my account was hacked and someone placed an {order}',
    'i got a suspicious message asking for my otp',
    'there is an unauthorized transaction on my {method}',
    'someone is pretending to be your support team',
    'i think my card was stolen and used here',
    'a scammer asked me to pay {amount} outside the app',
    'report fraud on my account',
    'strange {order} {id} that i never placed',
    'phishing email pretending to be you',
    'unknown device logged into my account and bought a {item}',
  ],
  chitchat: [
    'hello how are you',
    'thanks for the help',
    'you are awesome',
    'what is your name',
    'tell me a joke',
    'good morning',
    'are you a robot',
    'have a nice day',
    'what can you do',
    'lol ok',
    'nice talking to you',
    'who made you',
  ],
};

const PREFIXES = [
  'hi',
  'hello',
  'hey',
  'excuse me',
  'please help',
  'um',
  'so',
  'hi team',
  'quick question',
  'urgent',
];
const SUFFIXES = ['thanks', 'thank you', 'please', 'asap', 'pls', 'help', 'thx', '!!', '?'];
const CONNECTORS = [' and ', ' and also ', ', also ', '. plus ', ' - and '];

/** A typo in about `rate` of the words longer than three letters: a swap, a drop or a doubled letter. */
function typos(rng: Random, text: string, rate: number): string {
  return text
    .split(' ')
    .map((w) => {
      if (w.length < 4 || rng() >= rate) return w;
      const i = 1 + Math.floor(rng() * (w.length - 2));
      const kind = rng();
      if (kind < 1 / 3) return w.slice(0, i) + w[i + 1]! + w[i]! + w.slice(i + 2);
      if (kind < 2 / 3) return w.slice(0, i) + w.slice(i + 1);
      return w.slice(0, i) + w[i]! + w.slice(i);
    })
    .join(' ');
}

function decorate(rng: Random, core: string, typoRate: number): string {
  let text = core;
  if (rng() < 0.35) text = `${pick(rng, PREFIXES)} ${text}`;
  if (rng() < 0.35) text = `${text} ${pick(rng, SUFFIXES)}`;
  if (rng() < 0.15) text = text[0]!.toUpperCase() + text.slice(1);
  return typos(rng, text, typoRate);
}

/** Distinct examples from `make`, shuffled and split; held-out texts never occur in train. */
function splitDistinct(
  rng: Random,
  total: number,
  heldoutShare: number,
  make: () => TextExample,
): { train: TextExample[]; heldout: TextExample[] } {
  const seen = new Set<string>();
  const all: TextExample[] = [];
  for (let attempts = 0; all.length < total && attempts < total * 20; attempts++) {
    const e = make();
    if (seen.has(e.text)) continue;
    seen.add(e.text);
    all.push(e);
  }
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  const cut = Math.round(all.length * heldoutShare);
  return { heldout: all.slice(0, cut), train: all.slice(cut) };
}

export interface IntentDataOptions {
  /** Train + held-out examples. Default 5000. */
  readonly total?: number;
  readonly heldoutShare?: number;
  /** Share of examples that join two intents. Default 0.08. */
  readonly ambiguousShare?: number;
  readonly typoRate?: number;
}

/** Support/commerce intents with slot values, filler words, typos and a share of two-intent messages. */
export function intentData(seed: number, options: IntentDataOptions = {}): TextDataset {
  const rng = seededRandom(seed);
  const typoRate = options.typoRate ?? 0.05;
  const ambiguousShare = options.ambiguousShare ?? 0.08;
  const make = (): TextExample => {
    const a = Math.floor(rng() * INTENTS.length);
    const clause = (k: number) => fill(rng, pick(rng, INTENT_TEMPLATES[INTENTS[k]!]));
    if (rng() < ambiguousShare) {
      // Two non-chitchat intents in one message: a person would not know which one to answer first.
      const x = Math.floor(rng() * (INTENTS.length - 1));
      let y = Math.floor(rng() * (INTENTS.length - 2));
      if (y >= x) y++;
      const text = decorate(rng, clause(x) + pick(rng, CONNECTORS) + clause(y), typoRate);
      return { text, label: rng() < 0.5 ? x : y, ambiguous: true };
    }
    return { text: decorate(rng, clause(a), typoRate), label: a, ambiguous: false };
  };
  const { train, heldout } = splitDistinct(
    rng,
    options.total ?? 5000,
    options.heldoutShare ?? 0.2,
    make,
  );
  return { labels: INTENTS, train, heldout };
}

/** The products of the demo shop, each with the names shoppers use for it (first: the catalogue's). */
export const PRODUCTS: Readonly<Record<string, readonly string[]>> = {
  earbuds: ['wireless earbuds', 'bluetooth earphones', 'earbuds'],
  laptop: ['laptop', 'notebook computer', 'ultrabook'],
  phone: ['smartphone', 'phone', 'mobile'],
  shoes: ['running shoes', 'sneakers', 'trainers'],
  coffee: ['coffee maker', 'espresso machine', 'coffee machine'],
  fryer: ['air fryer', 'airfryer', 'oil free fryer'],
  watch: ['smart watch', 'fitness watch', 'smartwatch'],
  backpack: ['backpack', 'rucksack', 'school bag'],
  chair: ['office chair', 'desk chair', 'ergonomic chair'],
  toothbrush: ['electric toothbrush', 'sonic toothbrush', 'power toothbrush'],
};

/** What shoppers ask about a product, as question templates (`{p}`: the product's name). */
export const ASPECTS: Readonly<Record<string, readonly string[]>> = {
  warranty: [
    'how long is the warranty on the {p}',
    'does the {p} come with a guarantee',
    'what if my {p} breaks after a few months',
    'is there a repair policy for the {p}',
    'who fixes the {p} if it stops working',
    'warranty coverage for {p}',
  ],
  cleaning: [
    'how do i clean the {p}',
    'what is the best way to wash my {p}',
    'how should i take care of the {p}',
    'can the {p} be cleaned with water',
    'maintenance tips for the {p}',
    'the {p} got dirty, how do i clean it',
  ],
  size: [
    'what are the dimensions of the {p}',
    'how big is the {p}',
    'which size of {p} should i pick',
    'is the {p} too large to carry around',
    'does the {p} come in different sizes',
    'size guide for the {p}',
  ],
  discount: [
    'is there a discount on the {p}',
    'any coupon code for the {p}',
    'when will the {p} go on sale',
    'can i get a cheaper price for the {p}',
    'promo offers for {p}',
    'is the {p} cheaper during the sale',
  ],
};

const TOPIC_PREFIXES = [
  'hi',
  'hey,',
  'quick question:',
  'i was wondering',
  'can you tell me',
  'question -',
];
const TOPIC_SUFFIXES = ['?', 'thanks', 'please', 'thank you!'];

export interface TopicDataOptions {
  /** Paraphrases per topic, train + held-out. Default 50. */
  readonly perTopic?: number;
  readonly heldoutShare?: number;
}

/**
 * Fine-grained product questions: 10 products × 4 aspects = 40 topics, paraphrased. The held-out
 * paraphrases use (question template, product name) combinations that train never shows, so
 * the embedding is measured on new wordings of a topic, not on re-decorated training texts.
 */
export function topicData(seed: number, options: TopicDataOptions = {}): TextDataset {
  const rng = seededRandom(seed);
  const perTopic = options.perTopic ?? 50;
  const heldoutShare = options.heldoutShare ?? 0.2;
  const labels: string[] = [];
  const train: TextExample[] = [];
  const heldout: TextExample[] = [];
  const seen = new Set<string>();
  for (const [product, names] of Object.entries(PRODUCTS)) {
    for (const [aspect, templates] of Object.entries(ASPECTS)) {
      const label = labels.length;
      labels.push(`${product}/${aspect}`);
      const combos = templates.flatMap((t) => names.map((n) => t.replace('{p}', n)));
      for (let i = combos.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [combos[i], combos[j]] = [combos[j]!, combos[i]!];
      }
      const cut = Math.max(1, Math.round(combos.length * heldoutShare));
      const heldCount = Math.round(perTopic * heldoutShare);
      const emit = (pool: readonly string[], count: number, into: TextExample[]) => {
        for (let n = 0, attempts = 0; n < count && attempts < count * 50; attempts++) {
          let text = pick(rng, pool);
          if (rng() < 0.4) text = `${pick(rng, TOPIC_PREFIXES)} ${text}`;
          if (rng() < 0.4) text = `${text} ${pick(rng, TOPIC_SUFFIXES)}`;
          text = typos(rng, text, 0.04);
          if (seen.has(text)) continue;
          seen.add(text);
          into.push({ text, label, ambiguous: false });
          n++;
        }
      };
      emit(combos.slice(0, cut), heldCount, heldout);
      emit(combos.slice(cut), perTopic - heldCount, train);
    }
  }
  return { labels, train, heldout };
}

export const USER_FEATURES = [
  'affinity_electronics',
  'affinity_fashion',
  'affinity_home',
  'affinity_beauty',
  'affinity_sports',
  'affinity_grocery',
  'affinity_toys',
  'affinity_books',
  'price_sensitivity',
  'brand_loyalty',
  'novelty_seeking',
  'discount_affinity',
  'activity',
  'mobile_share',
  'tenure',
  'noise',
] as const;

/** Item features, aligned with the user features so that user × item pairs mean something. */
export const ITEM_FEATURES = [
  'is_electronics',
  'is_fashion',
  'is_home',
  'is_beauty',
  'is_sports',
  'is_grocery',
  'is_toys',
  'is_books',
  'price',
  'premium_brand',
  'newness',
  'discount',
  'fast_shipping',
  'popularity',
  'rating',
  'noise',
] as const;

export const RANK_DIMS = 16;

export interface RankSplit {
  readonly rows: number;
  /** [rows, 16] */
  readonly user: Float32Array;
  /** [rows, 16] */
  readonly item: Float32Array;
  /** 0/1 clicks drawn from `clickProb`. */
  readonly targets: Float32Array;
  /** The hidden ground-truth click probability of each row. */
  readonly clickProb: Float32Array;
}

export interface RankDataset {
  readonly train: RankSplit;
  readonly heldout: RankSplit;
}

export interface RankDataOptions {
  readonly users?: number;
  readonly items?: number;
  readonly trainRows?: number;
  readonly heldoutRows?: number;
}

function gaussian(rng: Random): number {
  const u = 1 - rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/** Features are rounded to 3 decimals so they survive JSON unchanged. */
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

function makeUser(rng: Random): number[] {
  const raw = Array.from({ length: 8 }, () => Math.exp(1.5 * gaussian(rng)));
  const top = Math.max(...raw);
  return [...raw.map((a) => a / top), ...Array.from({ length: 8 }, () => rng())].map(r3);
}

function makeItem(rng: Random): number[] {
  const cat = Math.floor(rng() * 8);
  const premium = rng() < 0.3 ? 1 : 0;
  const price = Math.min(1, Math.max(0, 0.35 + 0.35 * premium + 0.2 * gaussian(rng)));
  const discount = rng() < 0.3 ? 0.1 * (1 + Math.floor(rng() * 5)) : 0;
  return [
    ...Array.from({ length: 8 }, (_, c) => (c === cat ? 1 : 0)),
    price,
    premium,
    rng(),
    discount,
    rng() < 0.5 ? 1 : 0,
    rng() ** 2,
    Math.min(1, Math.max(0, 0.7 + 0.2 * gaussian(rng))),
    rng(),
  ].map(r3);
}

/** The hidden logit: category match, price × sensitivity, novelty × newness and other interactions. */
function clickLogit(u: readonly number[], it: readonly number[], noise: number): number {
  const at = (xs: readonly number[], k: number) => xs[k]!;
  let affinity = 0;
  for (let c = 0; c < 8; c++) affinity += at(u, c) * at(it, c);
  const priceSens = at(u, 8);
  const novelty = at(u, 10);
  return (
    -2.4 +
    3.2 * affinity -
    3 * priceSens * at(it, 8) +
    1.6 * at(u, 9) * at(it, 9) * (1 - priceSens) +
    2 * novelty * at(it, 10) +
    1.5 * at(it, 13) * (1 - novelty) +
    3 * at(u, 11) * at(it, 11) +
    0.8 * at(u, 12) * at(it, 12) +
    1.2 * (at(it, 14) - 0.7) +
    noise
  );
}

/** Users × items with a hidden, non-linear click probability; held-out pairs are not in train. */
export function rankData(seed: number, options: RankDataOptions = {}): RankDataset {
  const rng = seededRandom(seed);
  const users = Array.from({ length: options.users ?? 400 }, () => makeUser(rng));
  const items = Array.from({ length: options.items ?? 200 }, () => makeItem(rng));
  const trainRows = options.trainRows ?? 20000;
  const heldoutRows = options.heldoutRows ?? 4000;
  const seen = new Set<number>();
  const make = (rows: number): RankSplit => {
    const split = {
      rows,
      user: new Float32Array(rows * RANK_DIMS),
      item: new Float32Array(rows * RANK_DIMS),
      targets: new Float32Array(rows),
      clickProb: new Float32Array(rows),
    };
    if (rows > users.length * items.length - seen.size)
      throw new Error('not enough user-item pairs');
    for (let r = 0; r < rows;) {
      const ui = Math.floor(rng() * users.length);
      const ii = Math.floor(rng() * items.length);
      const key = ui * items.length + ii;
      if (seen.has(key)) continue;
      seen.add(key);
      const u = users[ui]!;
      const it = items[ii]!;
      const p = 1 / (1 + Math.exp(-clickLogit(u, it, 0.5 * gaussian(rng))));
      split.user.set(u, r * RANK_DIMS);
      split.item.set(it, r * RANK_DIMS);
      split.clickProb[r] = p;
      split.targets[r] = rng() < p ? 1 : 0;
      r++;
    }
    return split;
  };
  const train = make(trainRows);
  return { train, heldout: make(heldoutRows) };
}
