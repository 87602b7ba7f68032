import { startApp, launchBrowser, openPage } from './helpers.mjs';
const doska = await startApp();
const browser = await launchBrowser();
const { page, problems } = await openPage(await browser.newContext(), doska.url + '/');
await page.waitForTimeout(3000);
console.log(await page.locator('body').innerText());
console.log(problems);
await browser.close();
await doska.stop();
