/*
 * comet.mjs — comet.js as an ES module:
 *   import {Comet} from '/comet.mjs';   // or: import Comet from 'comet-client'
 * comet.js defines globalThis.Comet (and module.exports under Node); this
 * module runs it once and exports what it defined.
 */
import './comet.js';

export const Comet = globalThis.Comet;
export const CometError = Comet.CometError;
export default Comet;
